"""Static figures of the compiled CUDA kernels, measured without a GPU: registers, spills and loads in flight.

Compiles core/ops/cuda/*.cu for one architecture (nvcc -cubin, ptxas -v),
disassembles them (cuobjdump -sass) and prints, for every kernel instantiation of the chosen element type:
- registers per thread and spilled bytes (ptxas), hence resident 256-thread blocks per SM (65,536
  registers, at most 8 blocks: the occupancy limit these kernels meet first);
- the most bytes of global loads (and how many loads) issued before the first instruction that reads
  one of their results: how much a thread keeps in flight, the memory-level parallelism a memory-bound kernel lives
  on. Times the threads resident per SM, it estimates the bytes one SM keeps in flight (Little's law:
  ~4.8 TB/s x ~0.6 us of latency / 132 SMs = ~22 KiB per SM are needed to stream at an H200's rate).
These say why a kernel is latency-bound (the fourth session's filter kernel: 6 loads in flight), not how
fast it runs; bench/ops_gpu.py times them on a GPU.

    python bench/kernel_sass.py [--arch sm_90] [--dtype half] [--filter fir4]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "core" / "ops" / "cuda"
KERNEL_FILES = ("bias_act.cu", "upfirdn2d.cu", "modulate_weight.cu", "motion.cu", "torgb.cu")
REGISTERS_PER_SM, MAX_BLOCKS, THREADS = 65536, 8, 256


def find_tool(name: str) -> str:
    """nvcc / cuobjdump from CUDA_HOME, PATH, or (cuobjdump) the copy Triton ships."""
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    for cand in (Path(home) / "bin" / name, shutil.which(name)):
        if cand and Path(cand).exists():
            return str(cand)
    if name == "cuobjdump":
        try:
            import triton

            cand = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
            if cand.exists():
                return str(cand)
        except ImportError:
            pass
    sys.exit(f"kernel_sass: {name} not found (set CUDA_HOME to a CUDA toolkit)")


def compile_cubin(source: Path, arch: str, out: Path) -> dict[str, tuple[int, int]]:
    """Compile; {mangled kernel name: (registers, spill store bytes)} from ptxas' report."""
    res = subprocess.run([find_tool("nvcc"), "-std=c++17", "-O3", f"-arch={arch}", "-cubin",
                          "--ptxas-options=-v", "-o", str(out), str(source)], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"kernel_sass: nvcc failed on {source.name}:\n{res.stderr[-3000:]}")
    usage, name = {}, None
    for line in res.stderr.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            name = m.group(1)
        m = re.search(r"(\d+) bytes spill stores", line)
        spill = int(m.group(1)) if m else None
        m = re.search(r"Used (\d+) registers", line)
        if m and name:
            usage[name] = (int(m.group(1)), usage.get(name, (0, 0))[1])
        if spill is not None and name:
            usage[name] = (usage.get(name, (0, 0))[0], spill)
    return usage


def _width(op: str) -> int:
    """Bytes one thread's LDG moves: .U16 / .U8 / .64 / .128 suffixes, else 4."""
    for suffix, width in ((".128", 16), (".64", 8), (".U16", 2), (".S16", 2), (".U8", 1), (".S8", 1)):
        if suffix in op:
            return width
    return 4


def _main_loop(sass: str) -> str:
    """The instructions of the longest loop (from a backward branch's target to the branch): the
    grid-stride loop of these kernels, without the per-thread setup before it or a tail after it."""
    lines = sass.splitlines()
    addr = [int(m.group(1), 16) if (m := re.search(r"/\*([0-9a-f]{4,})\*/", line)) else None for line in lines]
    best = None
    for i, line in enumerate(lines):
        m = re.search(r"\bBRA\s+(?:`\()?0x([0-9a-f]+)", line)
        if m and addr[i] is not None and int(m.group(1), 16) < addr[i]:
            start = next(j for j, a in enumerate(addr) if a is not None and a >= int(m.group(1), 16))
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
    return "\n".join(lines[best[0]:best[1] + 1]) if best else sass


def loads_in_flight(sass: str) -> tuple[int, int]:
    """(loads, bytes): the most bytes of global loads (and how many loads) one thread issues in the main
    loop before one of their results is read."""
    body = _main_loop(sass)
    pending: dict[int, int] = {}  # first destination register of each pending load -> its bytes
    covered: set[int] = set()  # every register a pending load writes (a 16-byte load fills four)
    best = (0, 0)
    for line in body.splitlines():
        m = re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)\s*([^;]*);", line)
        if not m:
            continue
        op, regs = m.group(1), [int(r) for r in re.findall(r"\bR(\d+)\b", m.group(2))]
        # a load reads its address registers; any other instruction counts all its registers as read
        # (a write to a pending load's register waits for the load too)
        reads = set(regs[1:]) if op.startswith("LDG") else set(regs)
        if covered & reads:
            pending.clear()
            covered.clear()
        if op.startswith("LDG"):
            width = _width(op)
            pending[regs[0]] = width
            covered.update(range(regs[0], regs[0] + max(1, width // 4)))
            best = max(best, (sum(pending.values()), len(pending)))
    return best[1], best[0]


def demangle_short(name: str) -> str:
    """`fir4_kernel<half,CL,3,1,1>` from the mangled name (template arguments in order)."""
    m = re.search(r"\d+((?:bias_act_fwd|bias_act|upfirdn2d|fir4)_kernel)I(.*?)EEvN", name)
    if not m:
        return name
    words = {"6__half": "half", "13__nv_bfloat16": "bf16", "f": "float", "d": "double", "j": "u32", "l": "i64"}
    args = []
    for tok in re.findall(r"6__half|13__nv_bfloat16|Lb[01]E|Lin?\d+E?|[fdjl]", m.group(2) + "E"):
        if tok.startswith("Lb"):
            args.append("CL" if tok[2] == "1" else "NCHW")
        elif tok.startswith("Li"):
            args.append(tok[2:].rstrip("E").replace("n", "-"))
        else:
            args.append(words[tok])
    return f"{m.group(1)}<{','.join(args)}>"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--dtype", default="half", help="element type in the kernel names: half, bfloat16, f, d")
    parser.add_argument("--filter", default="", help="only kernels whose name contains this")
    args = parser.parse_args(argv)
    cuobjdump = find_tool("cuobjdump")
    tag = {"half": "6__half", "bfloat16": "13__nv_bfloat16"}.get(args.dtype, args.dtype)
    print(f"# kernel_sass  arch {args.arch}, element type {args.dtype}; blocks/SM for {THREADS} threads")
    print(f"{'kernel':<40} {'regs':>5} {'spill B':>7} {'blocks/SM':>9} {'loads in flight':>15} "
          f"{'bytes':>6} {'KiB in flight/SM':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for source in KERNEL_FILES:
            cubin = Path(tmp) / (source + ".cubin")
            usage = compile_cubin(SOURCES / source, args.arch, cubin)
            sass = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True).stdout
            for chunk in re.split(r"\n\s*Function : ", sass)[1:]:
                name = chunk.split("\n", 1)[0].strip()
                if f"I{tag}" not in name or args.filter not in name:
                    continue
                regs, spill = usage.get(name, (0, 0))
                blocks = min(MAX_BLOCKS, REGISTERS_PER_SM // max(1, -(-regs // 8) * 8 * THREADS))
                loads, nbytes = loads_in_flight(chunk)
                print(f"{demangle_short(name):<40} {regs:>5} {spill:>7} {blocks:>9} {loads:>15} {nbytes:>6} "
                      f"{nbytes * blocks * THREADS / 1024:>16.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
