"""Snapshots of a run: the networks as a safetensors checkpoint plus a training-state file.

    snapshots/network-00012.345.safetensors   G_ema, G, D (+ config and metadata), core.checkpoint format
    snapshots/state-00012.345.pt              optimizers, augment p, ADA accumulators, counters

Names carry the kimg (frames seen by D / 1000) to three decimals, so snapshots never overwrite one
another. Each file is written to a temp name and renamed (core.files.atomic_write), the network
first: a kill at any moment leaves either the previous complete pair or the new one. The state file
holds only tensors, dicts, lists and numbers and is read with `torch.load(weights_only=True)`.

A network file without its state file (a released `.pkl`, a `.safetensors` from core.convert, an
exported G_ema) is a *weights* checkpoint: `load_weights` reads it for fine-tuning.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from typing import Any

import torch

from core.checkpoint import Checkpoint, CheckpointError, load_checkpoint, read_header, save_checkpoint
from core.checkpoint import load_state as _load_module_state
from core.config import ConfigError, ModelConfig
from core.files import atomic_write

log = logging.getLogger(__name__)

STATE_FORMAT = "stylegan-v-studio/train-state/1"
_SNAPSHOT_RE = re.compile(r"(?:state|network)-([0-9.]+)\.(?:pt|safetensors)$")


class SnapshotError(RuntimeError):
    """No usable snapshot, or one that does not match this run."""


def snapshot_names(cur_nimg: int) -> tuple[str, str]:
    kimg = f"{cur_nimg / 1000:09.3f}"
    return f"network-{kimg}.safetensors", f"state-{kimg}.pt"


def save_network(path: str, modules: dict[str, torch.nn.Module], cfg: ModelConfig,
                 metadata: dict[str, Any]) -> None:
    """Atomic float32 safetensors checkpoint (core.checkpoint format)."""
    save_checkpoint(path, modules, cfg, metadata=metadata, fp16=False)


def load_network_tensors(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a network checkpoint, keyed "G_ema.<param>", "G.<param>", "D.<param>"."""
    return dict(load_checkpoint(path).tensors)


def load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Load the `prefix.` tensors into module strictly; a mismatch names the offending tensors."""
    sd = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    if not sd:
        raise SnapshotError(f"snapshot has no tensors for {prefix}")
    _load_module_state(module, sd, prefix)


def save_state(path: str, state: dict[str, Any]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save({"format": STATE_FORMAT, **state}, f)

    atomic_write(path, write)


def load_state(path: str) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SnapshotError(f"cannot read training state {path}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise SnapshotError(f"{path} is not a training-state file of this trainer")
    return state


def find_latest(run_dir: str) -> tuple[str, str] | None:
    """(network, state) paths of the newest complete, intact snapshot pair in run_dir, or None.

    A newer pair that is damaged (a file truncated or overwritten outside the trainer) is skipped with a
    warning naming the file, so `--resume latest` falls back to the newest pair that loads."""
    pairs = []
    for state_path in glob.glob(os.path.join(run_dir, "snapshots", "state-*.pt")):
        m = re.search(r"state-([0-9.]+)\.pt$", state_path)
        net = os.path.join(os.path.dirname(state_path), f"network-{m.group(1)}.safetensors") if m else None
        if m and os.path.isfile(net):
            pairs.append((float(m.group(1)), net, state_path))
    for _, net, state in sorted(pairs, reverse=True):
        damaged = _damaged(net, state)
        if damaged is None:
            return net, state
        log.warning("skipping the damaged snapshot %s (%s); trying an older one", *damaged)
    return None


def _damaged(net: str, state: str) -> tuple[str, str] | None:
    """(file, reason) when a snapshot pair cannot be read back, else None. Reads the network's header and
    checks every member of the state file's zip (CRCs) without unpickling anything."""
    import zipfile

    try:
        read_header(net)
        size = int.from_bytes(open(net, "rb").read(8), "little")
        if os.path.getsize(net) < 8 + size:
            return net, "truncated"
    except (CheckpointError, OSError) as exc:
        return net, str(exc)
    try:
        with zipfile.ZipFile(state) as z:
            bad = z.testzip()
        if bad is not None:
            return state, f"corrupt member {bad}"
    except (zipfile.BadZipFile, OSError) as exc:
        return state, str(exc)
    return None


def remove_partial_files(run_dir: str) -> list[str]:
    """Delete the temporary files that a killed write leaves in run_dir/snapshots (core.files names them
    `.<final name>.*.tmp`); returns what was removed."""
    removed = []
    for path in glob.glob(os.path.join(run_dir, "snapshots", ".*.tmp")):
        try:
            os.remove(path)
            removed.append(path)
        except OSError:
            pass
    if removed:
        log.warning("removed %d half-written file(s) left by an interrupted save: %s", len(removed),
                    ", ".join(os.path.basename(p) for p in removed))
    return removed


def _pair_of(path: str) -> tuple[str, str] | None:
    """(network, state) of a run snapshot file, or None when `path` is not half of such a pair."""
    m = _SNAPSHOT_RE.search(os.path.basename(path))
    if not m:
        return None
    d = os.path.dirname(path)
    return (os.path.join(d, f"network-{m.group(1)}.safetensors"), os.path.join(d, f"state-{m.group(1)}.pt"))


def is_weights_file(path: str) -> bool:
    """True for a `.pkl` / `.safetensors` file that is not part of a complete run snapshot pair."""
    if path == "latest" or not os.path.isfile(path) or not path.endswith((".pkl", ".safetensors")):
        return False
    pair = _pair_of(path)
    return pair is None or not all(os.path.isfile(p) for p in pair)


def resolve_resume(resume: str, run_dir: str | None = None) -> tuple[str, str]:
    """`latest` (newest complete pair in run_dir), a run folder, or a state / network file."""
    if resume == "latest":
        if run_dir is None:
            raise SnapshotError("--resume latest needs a run folder")
        found = find_latest(run_dir)
        if found is None:
            raise SnapshotError(f"no complete snapshot in {run_dir}")
        return found
    if os.path.isdir(resume):
        found = find_latest(resume)
        if found is None:
            raise SnapshotError(f"no complete snapshot in {resume}")
        return found
    pair = _pair_of(resume)
    if pair is None or not os.path.isfile(resume):
        raise SnapshotError(f"cannot resume from {resume!r}: give 'latest', a run folder, a snapshot file, "
                            "or a .pkl / .safetensors checkpoint to fine-tune")
    if not all(os.path.isfile(p) for p in pair):
        raise SnapshotError(f"snapshot {os.path.basename(resume)} is incomplete in {os.path.dirname(resume)}")
    return pair


# ---------------------------------------------------------------------- weights-only checkpoints


def load_weights(path: str) -> Checkpoint:
    """A released `.pkl` (restricted importer, no embedded code runs) or a core.checkpoint `.safetensors`."""
    if str(path).endswith(".pkl"):
        from core.official import import_official

        return import_official(path)
    return load_checkpoint(path)


def weights_config(path: str) -> ModelConfig:
    """The model config of a weights checkpoint (a `.safetensors` header only; a `.pkl` is imported)."""
    if str(path).endswith(".pkl"):
        return load_weights(path).cfg
    header = read_header(path)
    try:
        return ModelConfig.from_json(header["config"])
    except (KeyError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{path} is not a StyleGAN-V Studio checkpoint with a model config: {e}") from None


def weights_nimg(metadata: dict[str, Any]) -> int:
    """Real frames shown to D so far according to a checkpoint's metadata (0 when it does not say).

    Our snapshots store "kimg"; the reference's pickles keep `stats.cur_nimg` (core.official copies it
    into metadata["stats"]). Both count frames (clips x frames per clip), see training.loop.
    """
    stats = metadata.get("stats")
    if isinstance(stats, dict) and isinstance(stats.get("cur_nimg"), (int, float)):
        return int(stats["cur_nimg"])
    if isinstance(metadata.get("kimg"), (int, float)):
        return int(round(metadata["kimg"] * 1000))
    return 0


def describe_config_conflict(a: ModelConfig, b: ModelConfig) -> list[str]:
    """Fields where two model configs differ ("section.field: a vs b"), the name excepted."""
    da, db = a.to_dict(), b.to_dict()
    out = []
    for section in sorted(set(da) | set(db)):
        if section == "name":
            continue
        va, vb = da.get(section), db.get(section)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += [f"{section}.{k}: {va.get(k)!r} vs {vb.get(k)!r}" for k in sorted(set(va) | set(vb))
                    if va.get(k) != vb.get(k)]
        elif va != vb:
            out.append(f"{section}: {va!r} vs {vb!r}")
    return out

