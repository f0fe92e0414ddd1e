"""The trainer as a child process (docs/design.md, 'Training runs in its own process') and readers
for its run folder.

The studio starts `python -m training ...` (or torchrun for several GPUs) with its output in a log
file, learns the run folder from the "run folder: ..." line, stops it with SIGTERM (the trainer
saves a snapshot and exits), and reads stats.jsonl, samples/ and snapshots/. A crash of the
trainer is reported from its log; the studio keeps running.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PRESET_RESOLUTION = {"tiny": 16, "small": 64, "256": 256}


class TrainingError(ValueError):
    """A training request that cannot be served (shown to the user)."""


@dataclass(frozen=True)
class TrainStatus:
    state: str  # idle | running | stopping | finished | stopped | failed
    run_dir: str | None
    log_path: str | None
    returncode: int | None
    message: str  # one line for the UI; for "failed", the trainer's error

    @property
    def running(self) -> bool:
        return self.state in ("running", "stopping")


class TrainingProcess:
    """At most one trainer at a time per studio."""

    def __init__(self, outdir: str | os.PathLike = "runs", offline: bool = False):
        self.outdir = Path(outdir)
        self.offline = offline  # the trainer gets --offline: its metrics never download detector weights
        self._proc: subprocess.Popen | None = None
        self.total_kimg: float | None = None
        self._log_path: Path | None = None
        self._log_file = None
        self._stop_requested = False
        self._lock = threading.Lock()

    def command(self, data: str | None, preset: str, total_kimg: float, gpus: int, resume: str | None = None,
                extra: dict | None = None) -> list[str]:
        if gpus < 1:
            raise TrainingError("GPUs must be >= 1 (1 = a single process, on the CPU when there is no GPU)")
        if gpus > 1:
            import torch

            have = torch.cuda.device_count()
            if gpus > have:
                raise TrainingError(f"{gpus} GPUs asked for, {have} available")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                   "-m", "training"]
        else:
            cmd = [sys.executable, "-m", "training"]
        # Absolute paths: the trainer runs from the repository root, not from the studio's working folder.
        cmd += ["--outdir", str(self.outdir.resolve())]
        data = str(Path(data).resolve()) if data else data
        if resume is not None:
            cmd += ["--resume", resume if resume == "latest" else str(Path(resume).resolve())]
            if data:  # fine-tuning a weights file on this data (the model config comes from the file)
                cmd += ["--data", data]
        else:
            if preset not in PRESET_RESOLUTION:
                raise TrainingError(f"unknown preset {preset!r}; choose from {', '.join(PRESET_RESOLUTION)}")
            cmd += ["--data", str(data), "--preset", preset]
        if total_kimg is not None:
            if not total_kimg > 0:
                raise TrainingError("kimg must be positive")
            cmd += ["--total-kimg", f"{float(total_kimg):g}"]
        for key, value in (extra or {}).items():
            if value is not None and value != "":
                cmd += ["--" + key.replace("_", "-"), str(value)]
        if self.offline:
            cmd.append("--offline")
        return cmd

    def start(self, data: str | None, preset: str = "small", total_kimg: float = 25000, gpus: int = 1,
              resume: str | None = None, extra: dict | None = None) -> TrainStatus:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                raise TrainingError("a training run is already going; stop it first")
            if (resume is None or data) and not (data and Path(data).exists()):
                raise TrainingError(f"dataset not found: {data!r}")
            cmd = self.command(data, preset, total_kimg, gpus, resume, extra)
            self.total_kimg = float(total_kimg) if total_kimg else None  # for the time estimate
            self.outdir.mkdir(parents=True, exist_ok=True)
            self._log_path = self.outdir / f"studio-train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            if self._log_file is not None:
                self._log_file.close()
            self._log_file = open(self._log_path, "w")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                       PYTHONUNBUFFERED="1")
            log.info("starting trainer: %s", " ".join(cmd))
            self._proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=self._log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            self._stop_requested = False
        return self.status()

    def stop(self, timeout: float = 60.0) -> TrainStatus:
        """SIGTERM the trainer process alone: it finishes the step, snapshots and exits, shutting its data
        loader workers down itself (a signal to the whole group killed the workers first and the trainer
        died on their exit instead of saving). SIGKILL to the group after `timeout`."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return self.status()
        self._stop_requested = True
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return self.status()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("trainer did not stop within %.0f s; killing it", timeout)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return self.status()

    def log_text(self, max_chars: int = 20_000) -> str:
        if self._log_path is None or not self._log_path.is_file():
            return ""
        with open(self._log_path, errors="replace") as f:
            text = f.read()
        return text[-max_chars:]

    def run_dir(self) -> str | None:
        m = re.search(r"^run folder: (.+)$", self.log_text(10**7), re.M)
        if not m:
            return None
        p = Path(m.group(1).strip())
        return str(p if p.is_absolute() else ROOT / p)

    def status(self) -> TrainStatus:
        proc = self._proc
        if proc is None:
            return TrainStatus("idle", None, None, None, "no training run started from this studio")
        rc = proc.poll()
        run_dir, log_path = self.run_dir(), str(self._log_path)
        if rc is None:
            state = "stopping" if self._stop_requested else "running"
            return TrainStatus(state, run_dir, log_path, None, f"{state}: {run_dir or 'starting...'}")
        if self._stop_requested and rc in (0, -signal.SIGTERM, -signal.SIGKILL):
            snaps = snapshots(run_dir)
            where = f"stopped at {_snapshot_kimg(snaps[0]):g} kimg, snapshot {Path(snaps[0]).name}" if snaps else \
                "stopped before the first snapshot"
            return TrainStatus("stopped", run_dir, log_path, rc, f"{where}: {run_dir}")
        if rc == 0:
            return TrainStatus("finished", run_dir, log_path, rc, f"finished: {run_dir}")
        return TrainStatus("failed", run_dir, log_path, rc, f"trainer failed (exit code {rc}): "
                                                           f"{error_from_log(self.log_text())}")


def error_from_log(text: str) -> str:
    """The most telling line of a trainer log: its `error:` line, else a traceback's last line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln[len("error:"):].strip()
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", ln):
            return ln
    return lines[-1] if lines else "no output"


# ---------------------------------------------------------------------------------------- run folders


def _read_jsonl(path: Path) -> list[dict]:
    """JSON lines of a file being appended to: a half-written last line is skipped."""
    if not path.is_file():
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def read_stats(run_dir: str | os.PathLike | None) -> list[dict]:
    """The tick lines of stats.jsonl (metrics lines, `"kind": "metrics"`, are left to read_metrics)."""
    if not run_dir:
        return []
    return [r for r in _read_jsonl(Path(run_dir) / "stats.jsonl") if r.get("kind") != "metrics"]


def _newest(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    files = [p for pat in patterns for p in folder.glob(pat) if not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.name)


def sample_strip(run_dir: str | os.PathLike | None, limit: int = 12) -> list[tuple[np.ndarray, str]]:
    """The first frame of each tick's sample grid (newest `limit`), captioned with its kimg, oldest first."""
    files = _newest(Path(run_dir) / "samples", ("samples-*.mp4", "samples-*.gif")) if run_dir else []
    out = []
    for f in files[-limit:]:
        frame = _first_frame(str(f), f.stat().st_mtime_ns)
        if frame is not None:
            out.append((frame, f.stem.replace("samples-", "") + " kimg"))
    return out


@functools.lru_cache(maxsize=64)
def _first_frame(path: str, mtime_ns: int) -> np.ndarray | None:
    """Decoded once per file version (the strip is polled every few seconds)."""
    import imageio.v2 as imageio

    try:
        with imageio.get_reader(path) as reader:
            return np.asarray(reader.get_data(0))[..., :3]
    except Exception:  # a sample being written right now: skipped until the next poll
        return None


def latest_sample(run_dir: str | os.PathLike | None) -> str | None:
    files = _newest(Path(run_dir) / "samples", ("samples-*.mp4", "samples-*.gif")) if run_dir else []
    return str(files[-1]) if files else None


def _snapshot_kimg(path: str) -> float:
    """kimg recorded in a snapshot's metadata (the trainer writes it), else -1."""
    from core.checkpoint import CheckpointError, read_header

    try:
        return float(json.loads(read_header(path).get("metadata", "{}")).get("kimg", -1))
    except (CheckpointError, ValueError, TypeError):
        return -1.0


def snapshots(run_dir: str | os.PathLike | None) -> list[str]:
    files = _newest(Path(run_dir) / "snapshots", ("network-*.safetensors",)) if run_dir else []
    return [str(p) for p in reversed(files)]


def read_metrics(run_dir: str | os.PathLike | None) -> list[dict]:
    """Metric results of a run: the trainer's periodic evaluations (`"kind": "metrics"` lines of
    stats.jsonl) and files written into the run folder (`metric*.json` / `metric*.jsonl`, e.g. by
    `python -m training.metrics --out RUN/metrics-<kimg>.json`)."""
    if not run_dir:
        return []
    rows = [dict(r, file="stats.jsonl") for r in _read_jsonl(Path(run_dir) / "stats.jsonl")
            if r.get("kind") == "metrics"]
    for p in _newest(Path(run_dir), ("metric*.json", "metric*.jsonl")):
        if "manifest" in p.name:  # provenance beside a result (training.metrics.manifest), not a result
            continue
        try:
            lines = p.read_text().splitlines() if p.suffix == ".jsonl" else [p.read_text()]
            rows += [dict(json.loads(ln), file=p.name) for ln in lines if ln.strip()]
        except (OSError, ValueError, TypeError):
            log.warning("unreadable metrics file %s", p)
    return rows


def list_runs(outdir: str | os.PathLike) -> list[str]:
    d = Path(outdir)
    if not d.is_dir():
        return []
    return [str(p) for p in sorted(d.iterdir(), reverse=True) if p.is_dir() and re.match(r"^\d+-", p.name)]
