"""CUDA kernels for the ops in core.ops (bias_act, upfirdn2d, modulate_weight, bias_act_torgb) and the motion encoder
(token_noise, time_encoding), built lazily on first GPU use.

Importing this package only registers loaders with `core.ops._dispatch`; the extension is compiled
(ninja, cached by a hash of the sources, see `build.py`) the first time an op runs on a CUDA tensor
with impl="auto" or "cuda". Build from the command line: `python -m core.ops.cuda --arch 9.0`.
"""

from core.ops import _dispatch
from core.ops.cuda.build import BuildError, load_extension
from core.ops.cuda.functions import (
    bias_act_cuda,
    bias_act_torgb_cuda,
    modulate_weight_cuda,
    modulation_coefs_cuda,
    time_encoding_cuda,
    token_noise_cuda,
    upfirdn2d_bias_act_cuda,
    upfirdn2d_cuda,
)


def _load():
    return load_extension()


for _name in ("bias_act", "upfirdn2d", "modulate_weight", "token_noise", "time_encoding"):
    _dispatch.register_loader(_name, _load)

__all__ = ["BuildError", "bias_act_cuda", "bias_act_torgb_cuda", "load_extension", "modulate_weight_cuda",
           "modulation_coefs_cuda", "time_encoding_cuda", "token_noise_cuda", "upfirdn2d_bias_act_cuda",
           "upfirdn2d_cuda"]
