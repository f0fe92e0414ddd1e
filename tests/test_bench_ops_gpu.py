"""bench/ops_gpu.py's parity section on the CPU (the reference stands in for the kernels): the script runs
through the public ops and options and reports every check within tolerance."""

import subprocess
import sys
from pathlib import Path


def test_bench_ops_gpu_parity_cpu_smoke():
    script = Path(__file__).resolve().parents[1] / "bench" / "ops_gpu.py"
    res = subprocess.run([sys.executable, str(script), "--cpu-smoke", "--sections", "parity"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "== parity" in res.stdout and "modconv up2 fused=False" in res.stdout
    assert "PARITY: all within tolerance" in res.stdout
