"""bench/device_session.sh, the one prepared call a lent GPU gets: checked on the CPU so that a renamed
variant or a broken step is found here, not in the GPU's 15 minutes."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ops_gpu_bench", ROOT / "bench" / "ops_gpu.py")
ops_gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ops_gpu)


def test_variant_patterns_are_globs_over_whole_labels():
    labels = ["ref ops", "kernels, shared, NHWC, graph", "kernels, shared, NHWC, graph, vec2 filter",
              "kernels, per video, NHWC, graph, vec2 filter", "kernels, shared, graph"]
    patterns = ops_gpu.parse_variants("kernels, shared, NHWC, graph; *vec2 filter ;")
    assert patterns == ["kernels, shared, NHWC, graph", "*vec2 filter"]
    # a whole label names itself only (the commas inside labels are not separators)
    assert ops_gpu.select_variants(labels, patterns) == labels[:4]
    assert ops_gpu.select_variants(labels, ["kernels, shared, graph"]) == ["ref ops", "kernels, shared, graph"]
    with pytest.raises(ValueError, match="no generator variant matches.*'kernels, grouped'"):
        ops_gpu.select_variants(labels, ["*vec2 filter", "kernels, grouped"])


# The device image has torch but not the studio's packages: the smoke runs with them unimportable.
BLOCKER = """import sys
class _DeviceImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ImportError("not in the device image: " + name)
sys.meta_path.insert(0, _DeviceImage())
"""


def _smoke(mode: str, tmp_path: Path, **env) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out, log, site = tmp_path / "out", tmp_path / "log", tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(names=("gradio", "lpips", "open_clip", "playwright")))
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # `python` = this one
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(site), "SMOKE": "1", "OUT": str(out), "LOG": str(log), **env}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "device_session.sh"), mode, "420"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc, out, log


def test_the_check_call_runs_every_step_on_the_cpu(tmp_path):
    proc, out, log = _smoke("check", tmp_path)
    timeline = (out / "timeline.txt").read_text()
    assert proc.returncode == 0, timeline + proc.stdout[-3000:] + proc.stderr[-3000:]
    for step in ("gpu_tests", "ops_parity", "ops_e2e", "ops_timings"):
        assert f"   {step}: rc 0" in timeline, timeline
    assert "SKIPPED" not in timeline and (out / "logs.tgz").stat().st_size > 0
    # what the GPU would time: the NHWC graphs, both baselines, each later change undone; not all 40
    e2e = (log / "ops_e2e.log").read_text()
    line = next(ln for ln in e2e.splitlines() if "--variants would time" in ln)
    chosen = line.split(": ", 1)[1].split(" | ")
    assert len(chosen) == int(line.split("would time ")[1].split(":")[0]) == 18, line
    for layout in ("shared, NHWC", "per video, NHWC"):
        for what in ("", ", as in the fourth session", ", as in the sixth session", ", vec2 filter",
                     ", general bias_act", ", rowwise filter", ", modulation in PyTorch ops",
                     ", motion encoder in PyTorch ops"):
            assert f"kernels, {layout}, graph{what}" in chosen, (layout, what, chosen)
    assert "PARITY: all within tolerance" in e2e
    assert "gradio" not in e2e + (log / "gpu_tests.log").read_text()  # nothing reached for the studio's packages


def test_the_check_call_fails_on_a_variant_that_does_not_exist(tmp_path):
    proc, out, log = _smoke("check", tmp_path, VARIANTS="kernels, shared, NHWC, graph;*no such change",
                            SKIP="gpu_tests ops_parity ops_timings")
    timeline = (out / "timeline.txt").read_text()
    assert proc.returncode == 1 and "FAILED steps: ops_e2e" in timeline, timeline
    assert "no generator variant matches ['*no such change']" in (log / "ops_e2e.log").read_text()
