"""The perceptual loss module and the exact LPIPS metric."""
from .perceptual import PerceptualLoss, lpips

__all__ = ["PerceptualLoss", "lpips"]
