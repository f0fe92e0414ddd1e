"""CUDA kernels for bias_act and upfirdn2d (`ops.cpp` + one `.cu` per op), their autograd wiring
(`functions.py`) and their lazy build (`build.py`: once per source hash, on first GPU use, never at
import). Build from the command line: `python -m core.ops.cuda --arch 9.0`."""
