"""The LMGCS gait recognition network (PyTorch). Imported by training and export only."""
