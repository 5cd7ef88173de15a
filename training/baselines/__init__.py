"""Torch-free reference methods (GEI nearest neighbour) that any learned model must beat."""
