"""Import the checkpoints released with the paper (network-snapshot-*.pkl) without executing them.

`core.official_pickle` reads the file into inert records; here the records' init kwargs and OmegaConf
`cfg` give our `ModelConfig`, and their `_parameters` / `_buffers` give the tensors, which must fill our
modules exactly (docs/reference.md, 'Released checkpoints': the released parameter names equal ours).
Anything unmapped, missing or mis-shaped is an error that lists the names.

Image-only StyleGAN2-ADA pickles (e.g. FFHQ) are imported as a StyleGAN-V generator whose motion path
starts fresh and whose 4x4 conv ignores the motion channels (zero weights), so it renders the image
model at every t (with its per-pixel noise off, i.e. the image model's noise_mode='none').
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from pathlib import Path

import torch

from core.config import ConfigError, ModelConfig, preset
from core.official_config import (
    as_int,
    cfg_get,
    discriminator_section,
    generator_sections,
    init_kwargs,
    mapping_section,
    plain,
    synthesis_section,
)
from core.official_pickle import ObjectRecord, OfficialImportError, PersistentRecord, load_official_pickle
from core.state import Checkpoint, state_mismatch

log = logging.getLogger(__name__)

NETWORKS = ("G_ema", "G", "D")

__all__ = ["import_official", "OfficialImportError", "module_tensors", "plain"]


# ------------------------------------------------------------------------------------------ module tensors

def module_tensors(rec, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state_dict of a captured module: `_parameters`, persistent `_buffers`, then `_modules` recursively."""
    state = rec.state if isinstance(rec, PersistentRecord) else (rec.state if isinstance(rec, ObjectRecord) else None)
    if not isinstance(state, dict):
        raise OfficialImportError(f"{prefix or 'module'} is not a captured module ({type(rec).__name__})")
    out: dict[str, torch.Tensor] = OrderedDict()
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise OfficialImportError(f"{prefix}{name} is {type(value).__name__}, not a tensor")
            out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_tensors(child, f"{prefix}{name}."))
    return out


def _child(rec, *path):
    for name in path:
        mods = (rec.state or {}).get("_modules") or {} if rec is not None else {}
        rec = mods.get(name)
    return rec


# ------------------------------------------------------------------------------------------ state mapping

def _fit(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Check that `tensors` fill `module` exactly; return them as contiguous float32/int tensors."""
    own = module.state_dict()
    missing, unused, shapes = state_mismatch(own, tensors)
    if missing or unused or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameters not filled: {', '.join(missing[:12])}")
        if unused:
            parts.append(f"{len(unused)} tensors not used: {', '.join(unused[:12])}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {'; '.join(shapes[:12])}")
        raise OfficialImportError(f"{what} does not map onto our model: " + " | ".join(parts))
    return {k: tensors[k].to(own[k].dtype).contiguous().clone() for k in own}


def _build(cfg: ModelConfig, name: str) -> torch.nn.Module:
    from core.discriminator import Discriminator
    from core.generator import Generator

    return Discriminator(cfg) if name == "D" else Generator(cfg)


def _jsonable(x, depth: int = 0):
    if depth > 12:
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)[:80]


def _is_image_generator(rec: PersistentRecord) -> bool:
    syn = _child(rec, "synthesis")
    b4 = _child(rec, "synthesis", "b4")
    return (syn is not None and _child(syn, "motion_encoder") is None and b4 is not None
            and "const" in ((b4.state or {}).get("_parameters") or {}))


# ------------------------------------------------------------------------------------------ image-only pickles

_NOISE = re.compile(r"\.(noise_const|noise_strength)$")


def _image_tensors(tensors: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], c: int):
    """StyleGAN2-ADA generator tensors -> ours: `b4.const` becomes the temporal input's constant; the 4x4
    conv gets zero weights (and fresh styles) for the motion channels appended after the constant's C
    channels, so v_t has no effect until fine-tuning; the motion path keeps its fresh initialization."""
    out, dropped = {}, []
    for name, value in tensors.items():
        if _NOISE.search(name):
            dropped.append(name)
        elif name == "synthesis.b4.const":
            out["synthesis.b4.input.input.const"] = value.unsqueeze(0)
        elif name == "synthesis.b4.conv1.weight" and value.ndim == 4:
            w = torch.zeros_like(fresh[name])
            w[:, :c] = value  # motion channels follow the constant's (TemporalInput concatenates [const, v_t])
            out[name] = w
        elif name in ("synthesis.b4.conv1.affine.weight", "synthesis.b4.conv1.affine.bias"):
            v = fresh[name].clone()
            v[:c] = value
            out[name] = v
        else:
            out[name] = value
    for name, value in fresh.items():
        if name.startswith("synthesis.motion_encoder."):
            out[name] = value
    return out, dropped


def _import_image_generator(path: Path, data: dict, gens: list[str]) -> Checkpoint:
    kw = init_kwargs(data[gens[0]], gens[0])
    sections = dict(mapping=mapping_section(kw, as_int(kw.get("z_dim", 512), "z_dim")),
                    synthesis=synthesis_section(kw, as_int(kw["w_dim"], "w_dim")))
    syn = sections["synthesis"]
    sections["discriminator"] = dict(channel_base=syn["channel_base"], channel_max=syn["channel_max"],
                                     num_fp16_res=syn["num_fp16_res"], conv_clamp=syn["conv_clamp"],
                                     concat_res=min(16, syn["img_resolution"] // 2))
    try:
        cfg = preset("256").replace(name=f"official-image:{path.stem}", **sections)
    except ConfigError as exc:
        raise OfficialImportError(f"{path}: derived config is invalid: {exc}") from None
    with torch.random.fork_rng(devices=[]):  # fresh motion path, reproducible, global RNG untouched
        torch.manual_seed(0)
        fresh = _build(cfg, "G_ema").state_dict()
    c = cfg.synthesis.channels(4)
    tensors, dropped, strengths = {}, [], []
    for name in gens:
        src = module_tensors(data[name])
        strengths += [float(v.abs().max()) for k, v in src.items() if k.endswith("noise_strength")]
        mapped, dropped_here = _image_tensors(src, fresh, c)
        dropped += [f"{name}.{k}" for k in dropped_here]
        fitted = _fit(_build(cfg, name), mapped, f"{name} of {path} (image-only StyleGAN2 pickle)")
        tensors.update({f"{name}.{k}": v for k, v in fitted.items()})
    log.warning("%s is an image-only StyleGAN2 generator: motion starts untrained, per-pixel noise is dropped "
                "(max noise strength %.3g); frames equal the image model's noise_mode='none' at every t",
                path, max(strengths, default=0.0))
    metadata = {"source": "official-image-pickle", "file": path.name, "networks": gens,
                "class_names": {n: data[n].class_name for n in gens}, "dropped_noise_tensors": dropped,
                "max_noise_strength": max(strengths, default=0.0),
                "skipped": sorted(str(k) for k in data if k not in gens)}
    return Checkpoint(cfg, tensors, metadata)


def _augment_p(rec) -> float | None:
    """The ADA probability of the snapshot's augment pipe (for resuming), read from its `p` buffer."""
    p = ((rec.state.get("_buffers") or {}).get("p") if isinstance(rec, PersistentRecord) else None)
    return float(p) if isinstance(p, torch.Tensor) and p.numel() == 1 else None


def import_official(path: str | Path, modules: tuple[str, ...] | None = None) -> Checkpoint:
    """Read a released `network-snapshot-*.pkl` safely -> Checkpoint(cfg, tensors "G_ema."/"G."/"D.", metadata).

    `modules` picks networks (default: every one of G_ema, G, D present in the file; G_ema or G required).
    """
    path = Path(path)
    data = load_official_pickle(path)
    if isinstance(data, PersistentRecord):  # a bare pickled generator
        data = {"G_ema": data}
    if not isinstance(data, dict):
        raise OfficialImportError(f"{path} holds {type(data).__name__}, expected a snapshot dict")
    present = [n for n in NETWORKS if isinstance(data.get(n), PersistentRecord)]
    wanted = list(modules) if modules is not None else present
    absent = [n for n in wanted if n not in present]
    if absent:
        raise OfficialImportError(f"{path} holds no {', '.join(absent)} (it has: {', '.join(present) or 'none'})")
    g_name = next((n for n in ("G_ema", "G") if n in present), None)
    if g_name is None:
        raise OfficialImportError(f"{path} holds no generator (keys: {', '.join(map(str, data))})")
    g_rec = data[g_name]
    if _is_image_generator(g_rec):
        if modules is not None and "D" in modules:
            raise OfficialImportError(f"{path} is an image-only StyleGAN2 pickle: its single-image D cannot "
                                      "serve as a StyleGAN-V discriminator (import G_ema / G only)")
        return _import_image_generator(path, data, [n for n in wanted if n != "D"])

    sections = generator_sections(init_kwargs(g_rec, g_name))
    d_tensors = module_tensors(data["D"]) if "D" in wanted else {}
    if "D" in wanted:
        sections["discriminator"] = discriminator_section(init_kwargs(data["D"], "D"), d_tensors)
    else:  # no D imported: a default D that fits the generator (for fine-tuning with a fresh D)
        syn, g_cfg = sections["synthesis"], plain(g_rec.state.get("cfg")) or {}
        sections["discriminator"] = dict(
            channel_base=syn["channel_base"], channel_max=syn["channel_max"], num_fp16_res=syn["num_fp16_res"],
            conv_clamp=syn["conv_clamp"], concat_res=min(16, syn["img_resolution"] // 2),
            max_num_frames=as_int(cfg_get(g_cfg, "sampling.max_num_frames", 1024), "sampling.max_num_frames"))
    try:
        cfg = preset("256").replace(name=f"official:{path.stem}", **sections)
    except ConfigError as exc:
        raise OfficialImportError(f"{path}: derived config is invalid: {exc}") from None

    tensors: dict[str, torch.Tensor] = {}
    for name in wanted:
        rec_tensors = d_tensors if name == "D" else module_tensors(data[name])
        fitted = _fit(_build(cfg, name), rec_tensors, f"{name} of {path}")
        tensors.update({f"{name}.{k}": v for k, v in fitted.items()})
    g_cfg = plain(g_rec.state.get("cfg")) or {}
    metadata = {
        "source": "official-pickle", "file": path.name, "networks": wanted,
        "class_names": {n: data[n].class_name for n in wanted},
        "reference_max_num_frames": _jsonable(cfg_get(g_cfg, "sampling.max_num_frames", None)),
        "generator_cfg": _jsonable(g_cfg), "training_set_kwargs": _jsonable(plain(data.get("training_set_kwargs"))),
        "stats": _jsonable(plain(data.get("stats"))),
        "skipped": sorted(str(k) for k in data if k not in wanted),
        "augment_p": _augment_p(data.get("augment_pipe")),
    }
    log.info("imported %s from %s (%d tensors)", ", ".join(wanted), path, len(tensors))
    return Checkpoint(cfg, tensors, metadata)
