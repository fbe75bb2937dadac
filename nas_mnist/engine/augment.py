"""Batched augmentation: one random affine transform per image, applied to a whole batch.

Works on images in [0, 1] *before* normalisation, so the border that rotation exposes is
zero, i.e. black background. Runs wherever the batch lives (CPU or GPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, *, rotate_deg: float, translate: float, scale: float,
                  generator: torch.Generator | None = None, p: float = 1.0) -> torch.Tensor:
    """Rotate by U(-rotate_deg, rotate_deg), shift by U(-translate, translate) of the side per
    axis and zoom by U(1 - scale, 1 + scale); zeros fill what comes into view. With p < 1 each
    image is transformed with probability p and kept as it is otherwise (the draws for p = 1
    are exactly the older ones)."""
    if (rotate_deg == 0 and translate == 0 and scale == 0) or p == 0:
        return x
    n = x.shape[0]

    def uniform(half_width: float) -> torch.Tensor:
        u = torch.rand(n, generator=generator, device=generator.device if generator else "cpu")
        return ((u * 2 - 1) * half_width).to(x.device, x.dtype)

    angle = uniform(math.radians(rotate_deg))
    zoom = 1 + uniform(scale)
    # affine_grid maps output coords to input coords, in [-1, 1] units (2 = one image side).
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin, uniform(2 * translate)], dim=1),
        torch.stack([sin, cos, uniform(2 * translate)], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if p >= 1:
        return moved
    keep = torch.rand(n, generator=generator, device=generator.device if generator else "cpu")
    return torch.where((keep < p).to(x.device)[:, None, None, None], moved, x)
