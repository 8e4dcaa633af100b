"""Losses registered in mmdet3d MODELS."""
from .log_sobolev_loss import LogSobolevLoss

__all__ = ["LogSobolevLoss"]
