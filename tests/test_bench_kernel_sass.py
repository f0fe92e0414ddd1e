"""bench/kernel_sass.py: its reading of SASS (loads in flight in the main loop) and names, on snippets
whose answer is known; the whole tool (nvcc + cuobjdump) in a slow test where a CUDA toolkit exists."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "kernel_sass.py"
spec = importlib.util.spec_from_file_location("kernel_sass", SCRIPT)
kernel_sass = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kernel_sass)

# setup load (before the loop), then a loop: two 16-byte loads and a 2-byte one in flight before the first
# read of R8 (part of the first 16-byte load), then one more load, then the backward branch.
SNIPPET = """
        /*0000*/                   LDG.E R2, desc[UR4][R2.64] ;
        /*0010*/                   FADD R3, R2, R2 ;
        /*0020*/                   LDG.E.128 R8, desc[UR4][R4.64] ;
        /*0030*/              @P0  LDG.E.128 R12, desc[UR4][R6.64] ;
        /*0040*/                   LDG.E.U16 R16, desc[UR4][R6.64] ;
        /*0050*/                   HADD2.F32 R20, -RZ, R9.H0_H0 ;
        /*0060*/                   LDG.E.U16 R17, desc[UR4][R6.64] ;
        /*0070*/                   STG.E desc[UR4][R4.64], R17 ;
        /*0080*/              @P1  BRA 0x20 ;
        /*0090*/                   EXIT ;
"""


def test_loads_in_flight_counts_the_main_loop_by_bytes():
    assert kernel_sass.loads_in_flight(SNIPPET) == (3, 34)


def test_kernel_names_are_shortened_to_their_template_arguments():
    name = ("_ZN3sgv45_GLOBAL__N__2e8c33b2_12_upfirdn2d_cu_a4f95e3b11fir4_kernelI6__halfLb1ELin1ELi2ELi1EEEv"
            "NS_15Upfirdn2dParamsEi")
    assert kernel_sass.demangle_short(name) == "fir4_kernel<half,CL,-1,2,1>"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists(),
                    reason="no CUDA toolkit")
def test_the_tool_reports_every_filter_kernel():
    res = subprocess.run([sys.executable, str(SCRIPT), "--filter", "fir4"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line for line in res.stdout.splitlines() if line.startswith("fir4_kernel<half,")]
    assert len(rows) >= 10 and all(int(row.split()[4]) > 0 for row in rows)  # loads in flight found
