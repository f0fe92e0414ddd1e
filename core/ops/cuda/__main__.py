"""`python -m core.ops.cuda --arch 9.0`: compile and load the CUDA ops (no GPU needed); exit 1 if that fails."""

import argparse
import logging
import sys
import time

from core.ops.cuda.build import BuildError, load_extension

parser = argparse.ArgumentParser(description="Compile the StyleGAN-V Studio CUDA ops (no GPU needed).")
parser.add_argument("--arch", help="TORCH_CUDA_ARCH_LIST, e.g. 9.0 (default: the visible GPUs)")
parser.add_argument("--verbose", action="store_true", help="show the compiler command lines")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")
t0 = time.perf_counter()
try:
    module = load_extension(verbose=args.verbose, arch=args.arch)
except BuildError as exc:
    sys.exit(f"FAILED: {exc}")
if not all(hasattr(module, fn) for fn in ("bias_act", "upfirdn2d")):
    sys.exit("FAILED: the built module lacks bias_act or upfirdn2d")
print(f"OK: {module.name} built and loaded in {time.perf_counter() - t0:.1f} s")
