"""The LMGCS gait recognition network (PyTorch). Imported by training and export only."""

from model.config import VARIANTS, LMGCSConfig
from model.lmgcs import LMGCS
from model.output import GaitOutput
from model.registry import create_model

__all__ = ["LMGCS", "VARIANTS", "GaitOutput", "LMGCSConfig", "create_model"]
