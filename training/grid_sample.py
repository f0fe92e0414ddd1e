"""Bilinear `grid_sample` (zeros padding, align_corners=False) that supports R1's double backward on GPU.

Lazy R1 differentiates D's gradient w.r.t. the real clips, and the clips pass through the augmentation's
grid_sample. PyTorch's CUDA grid_sample has no derivative for its backward ("derivative for
aten::grid_sampler_2d_backward is not implemented", seen on torch 2.11 / H200), so, as ADA does, the
backward is wrapped in a function whose own backward is known: grad_input is linear in grad_output
(the transpose of the sampling), so its derivative w.r.t. grad_output is the sampling itself. The grid
is never differentiated (augmentation grids are constants).
"""

from __future__ import annotations

import torch

_BILINEAR, _ZEROS, _ALIGN_CORNERS = 0, 0, False


def grid_sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W], grid [N, H_out, W_out, 2] in [-1, 1] -> [N, C, H_out, W_out]."""
    assert x.ndim == 4 and grid.ndim == 4 and grid.shape[-1] == 2, (x.shape, grid.shape)
    return _GridSample.apply(x, grid)


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid):
        ctx.save_for_backward(x, grid)
        return torch.grid_sampler(x, grid, _BILINEAR, _ZEROS, _ALIGN_CORNERS)

    @staticmethod
    def backward(ctx, grad_output):
        x, grid = ctx.saved_tensors
        assert not ctx.needs_input_grad[1], "the grid of the augmentation is not differentiated"
        grad_x = _GridSampleBackward.apply(grad_output, x, grid) if ctx.needs_input_grad[0] else None
        return grad_x, None


class _GridSampleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, x, grid):
        ctx.save_for_backward(grid)
        grad_x, _ = torch.ops.aten.grid_sampler_2d_backward(grad_output, x, grid, _BILINEAR, _ZEROS,
                                                            _ALIGN_CORNERS, [True, False])
        return grad_x

    @staticmethod
    def backward(ctx, grad2_x):
        (grid,) = ctx.saved_tensors
        grad2_output = _GridSample.apply(grad2_x, grid) if ctx.needs_input_grad[0] else None
        return grad2_output, None, None
