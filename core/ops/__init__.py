"""The ops StyleGAN2 is built from, each with `impl="auto" | "ref" | "cuda"`.

The pure-PyTorch reference is always available (and is what CPUs run); CUDA kernels build lazily on
first use on a GPU and never at import.
"""

from core.ops.bias_act import ACTIVATIONS, bias_act, bias_act_ref
from core.ops.conv2d_resample import conv2d_resample
from core.ops.modconv import modulated_conv2d, modulated_conv2d_videos
from core.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upfirdn2d_ref, upsample2d

__all__ = [
    "ACTIVATIONS", "bias_act", "bias_act_ref", "conv2d_resample", "modulated_conv2d", "modulated_conv2d_videos",
    "downsample2d", "setup_filter", "upfirdn2d", "upfirdn2d_ref", "upsample2d",
]
