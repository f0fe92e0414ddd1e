"""Import the checkpoints released with the paper (network-snapshot-*.pkl) without executing them.

`core.official_pickle` reads the file into inert records; here the records' init kwargs and OmegaConf
`cfg` give our `ModelConfig`, and their `_parameters` / `_buffers` give the tensors, which must fill our
modules exactly (REFERENCE.md section 6: the released parameter names equal ours). Anything unmapped,
missing or mis-shaped is an error that lists the names.

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
from typing import Any

import numpy as np
import torch

from core.checkpoint import Checkpoint, state_mismatch
from core.config import ConfigError, ModelConfig, preset
from core.official_pickle import (
    ObjectRecord,
    OfficialImportError,
    PersistentRecord,
    TypeRef,
    load_official_pickle,
)

log = logging.getLogger(__name__)

NETWORKS = ("G_ema", "G", "D")

__all__ = ["import_official", "OfficialImportError", "module_tensors", "plain"]


# ------------------------------------------------------------------------------------------ OmegaConf records

def _is(rec, kind: str) -> bool:
    return isinstance(rec, ObjectRecord) and rec.kind == kind


def _field(rec, *names):
    state = rec.state if isinstance(rec.state, dict) else {}
    for n in names:  # omegaconf 2.1+ uses "_content"/"_val"/"_parent"; older versions had no underscore
        if n in state:
            return state[n]
    return None


def _is_container(rec) -> bool:
    return _is(rec, "DictConfig") or _is(rec, "ListConfig")


def _is_node(rec) -> bool:
    return isinstance(rec, ObjectRecord) and rec.qualname.startswith("omegaconf.nodes.")


_INTERP = re.compile(r"\$\{([^${}]*)\}")


class _Resolver:
    """Turns OmegaConf records into plain dicts/lists, resolving `${a.b}` and `${.a}` interpolations."""

    def __init__(self):
        self.depth = 0

    def plain(self, x, parent=None):
        if self.depth > 64:
            raise OfficialImportError("config interpolation is too deep or circular")
        self.depth += 1
        try:
            return self._plain(x, parent)
        finally:
            self.depth -= 1

    def _plain(self, x, parent):
        if _is_container(x):
            content = _field(x, "_content", "content")
            if isinstance(content, str):
                return self.resolve(content, _field(x, "_parent", "parent") or parent)
            if _is(x, "DictConfig"):
                return {str(k): self.plain(v, x) for k, v in (content or {}).items()}
            return [self.plain(v, x) for v in (content or [])]
        if _is_node(x):
            val = _field(x, "_val", "val")
            return self.resolve(val, _field(x, "_parent", "parent") or parent) if isinstance(val, str) else val
        if isinstance(x, ObjectRecord):
            return {"__record__": x.qualname}
        if isinstance(x, dict):
            return {str(k) if not isinstance(k, int) else k: self.plain(v, parent) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [self.plain(v, parent) for v in x]
        if isinstance(x, TypeRef):
            return x.qualname
        if isinstance(x, np.generic):
            return x.item()
        return x

    def resolve(self, s: str, container):
        whole = _INTERP.fullmatch(s)
        if whole:
            return self.lookup(whole.group(1), container, s)
        return _INTERP.sub(lambda m: str(self.lookup(m.group(1), container, m.group(0))), s)

    def lookup(self, path: str, container, literal: str):
        if ":" in path or container is None:  # custom resolvers (env, hydra, ...) are left as written
            return literal
        node = container
        if path.startswith("."):
            dots = len(path) - len(path.lstrip("."))
            for _ in range(dots - 1):
                node = _field(node, "_parent", "parent")
            path = path[dots:]
        else:
            while _field(node, "_parent", "parent") is not None:
                node = _field(node, "_parent", "parent")
        for key in [k for k in path.split(".") if k]:
            content = _field(node, "_content", "content") if _is_container(node) else None
            if isinstance(content, dict) and key in content:
                node = content[key]
            elif isinstance(content, list) and key.isdigit() and int(key) < len(content):
                node = content[int(key)]
            else:
                return literal  # unresolvable: keep the text, config derivation reports what it needs
        return self.plain(node, None)


def plain(x) -> Any:
    """Records (EasyDict, DictConfig, nodes, numpy scalars) -> plain Python values with resolved interpolations."""
    return _Resolver().plain(x)


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


# ------------------------------------------------------------------------------------------ config derivation

def _get(d: dict, path: str, default=KeyError):
    node = d
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            if default is KeyError:
                raise OfficialImportError(f"the pickle's config lacks {path!r}")
            return default
        node = node[key]
    if isinstance(node, str) and "${" in node:
        raise OfficialImportError(f"the pickle's config value {path!r} = {node!r} cannot be resolved")
    return node


def _unsupported(what: str) -> OfficialImportError:
    return OfficialImportError(f"unsupported checkpoint variant: {what} (StyleGAN-V Studio implements the "
                               "paper's model: no noise inputs, conv motion mapping, acyclic Fourier time "
                               "encoding concatenated to the 4x4 constant)")


def _as_int(x, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or float(x) != int(x):
        raise OfficialImportError(f"{what} must be an integer, got {x!r}")
    return int(x)


_SYNTHESIS_KEYS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "fp16_channels_last",
                   "architecture", "resample_filter"}
_MAPPING_KEYS = {"num_layers", "lr_multiplier", "w_avg_beta", "activation", "embed_features", "layer_features",
                 "cfg"}


def _check_kwargs(kwargs: dict, allowed: set, what: str, w_dim: int) -> None:
    extra = sorted(set(kwargs) - allowed)
    if extra:
        raise _unsupported(f"{what} {extra}")
    if kwargs.get("architecture", "skip") != "skip" and what == "synthesis_kwargs":
        raise _unsupported(f"synthesis architecture {kwargs['architecture']!r}")
    if list(kwargs.get("resample_filter", [1, 3, 3, 1])) != [1, 3, 3, 1]:
        raise _unsupported(f"{what} resample_filter {kwargs['resample_filter']}")
    if kwargs.get("activation", "lrelu") != "lrelu":
        raise _unsupported(f"{what} activation {kwargs['activation']!r}")
    for key in ("embed_features", "layer_features"):
        if kwargs.get(key) not in (None, w_dim):
            raise _unsupported(f"{what} {key}={kwargs[key]}")


def _synthesis_section(kw: dict, w_dim: int) -> dict:
    syn = kw.get("synthesis_kwargs") or {}
    _check_kwargs(syn, _SYNTHESIS_KEYS, "synthesis_kwargs", w_dim)
    clamp = syn.get("conv_clamp")
    return dict(img_resolution=_as_int(kw["img_resolution"], "img_resolution"),
                img_channels=_as_int(kw.get("img_channels", 3), "img_channels"),
                channel_base=_as_int(syn.get("channel_base", 32768), "channel_base"),
                channel_max=_as_int(syn.get("channel_max", 512), "channel_max"),
                num_fp16_res=_as_int(syn.get("num_fp16_res", 0), "num_fp16_res"),
                conv_clamp=None if clamp is None else float(clamp))


def _mapping_section(kw: dict, z_dim: int) -> dict:
    w_dim = _as_int(kw["w_dim"], "w_dim")
    mk = kw.get("mapping_kwargs") or {}
    _check_kwargs(mk, _MAPPING_KEYS, "mapping_kwargs", w_dim)
    return dict(z_dim=z_dim, c_dim=_as_int(kw.get("c_dim", 0), "c_dim"), w_dim=w_dim,
                num_layers=_as_int(mk.get("num_layers", 8), "mapping num_layers"),
                lr_multiplier=float(mk.get("lr_multiplier", 0.01)), w_avg_beta=float(mk.get("w_avg_beta", 0.995)))


def _generator_sections(kw: dict) -> dict:
    """G init kwargs + cfg (model.generator of the run's config) -> ModelConfig sections."""
    cfg = kw.get("cfg")
    if not isinstance(cfg, dict):
        raise OfficialImportError("the generator's init kwargs carry no cfg")
    if _get(cfg, "use_noise", True):
        raise _unsupported("per-pixel noise inputs (use_noise=true)")
    if _get(cfg, "input.type") != "temporal":
        raise _unsupported(f"generator input type {_get(cfg, 'input.type')!r}")
    if _get(cfg, "motion.gen_strategy") != "conv":
        raise _unsupported(f"motion generation strategy {_get(cfg, 'motion.gen_strategy')!r}")
    if not _get(cfg, "motion.fourier"):
        raise _unsupported("motion without the Fourier time encoder (motion.fourier=false)")
    if _get(cfg, "time_enc.cond_type") != "concat_const":
        raise _unsupported(f"time conditioning {_get(cfg, 'time_enc.cond_type')!r}")
    motion_z = _as_int(_get(cfg, "motion.z_dim"), "motion.z_dim")
    if _as_int(_get(cfg, "motion.v_dim", motion_z), "motion.v_dim") != motion_z:
        raise _unsupported("motion.v_dim different from motion.z_dim")
    motion = dict(z_dim=motion_z,
                  delta_z=_as_int(_get(cfg, "motion.motion_z_distance"), "motion.motion_z_distance"),
                  kernel_size=_as_int(_get(cfg, "motion.kernel_size"), "motion.kernel_size"),
                  num_freqs=_as_int(_get(cfg, "time_enc.dim"), "time_enc.dim"),
                  min_period=float(_get(cfg, "time_enc.min_period_len")),
                  max_period=float(_get(cfg, "time_enc.max_period_len")), lr_multiplier=0.01)
    z_dim = _as_int(kw.get("z_dim", _get(cfg, "z_dim")), "z_dim")
    return dict(mapping=_mapping_section(kw, z_dim), motion=motion,
                synthesis=_synthesis_section(kw, _as_int(kw["w_dim"], "w_dim")))


def _discriminator_section(kw: dict, tensors: dict[str, torch.Tensor]) -> dict:
    cfg = kw.get("cfg")
    if not isinstance(cfg, dict):
        raise OfficialImportError("the discriminator's init kwargs carry no cfg")
    if kw.get("architecture", "resnet") != "resnet":
        raise _unsupported(f"discriminator architecture {kw['architecture']!r}")
    if kw.get("cmap_dim") is not None:
        raise _unsupported(f"discriminator cmap_dim={kw['cmap_dim']}")
    if _get(cfg, "dummy_c", False):
        raise _unsupported("discriminator with dummy_c=true")
    num_frames = _as_int(_get(cfg, "sampling.num_frames_per_video"), "sampling.num_frames_per_video")
    if num_frames > 1 and _get(cfg, "sampling.type", "random") == "uniform":
        raise _unsupported("discriminator time encoding of uniform sampling (one gap)")
    if _get(cfg, "skip_small_t_freqs", 0):
        raise _unsupported("discriminator skip_small_t_freqs")
    block = kw.get("block_kwargs") or {}
    if sorted(set(block) - {"freeze_layers", "fp16_channels_last"}):
        raise _unsupported(f"discriminator block_kwargs {sorted(block)}")
    epi = kw.get("epilogue_kwargs") or {}
    mk = kw.get("mapping_kwargs") or {}
    embed = tensors.get("time_encoder.const_embed.weight")
    clamp = kw.get("conv_clamp")
    return dict(channel_base=_as_int(kw.get("channel_base", 32768), "D channel_base"),
                channel_max=_as_int(kw.get("channel_max", 512), "D channel_max"),
                num_fp16_res=_as_int(kw.get("num_fp16_res", 0), "D num_fp16_res"),
                conv_clamp=None if clamp is None else float(clamp), num_frames=num_frames,
                concat_res=_as_int(_get(cfg, "concat_res"), "concat_res"),
                num_frames_div_factor=_as_int(_get(cfg, "num_frames_div_factor"), "num_frames_div_factor"),
                mbstd_group_size=_as_int(epi.get("mbstd_group_size", 4), "mbstd_group_size"),
                mbstd_num_channels=_as_int(epi.get("mbstd_num_channels", 1), "mbstd_num_channels"),
                max_num_frames=_as_int(_get(cfg, "sampling.max_num_frames"), "sampling.max_num_frames"),
                time_embed_dim=int(embed.shape[1]) if embed is not None and embed.ndim == 2 else 256,
                mapping_layers=_as_int(mk.get("num_layers", 8), "D mapping num_layers"))


def _init_kwargs(rec: PersistentRecord, what: str) -> dict:
    if (rec.state.get("_init_args") or ()) not in ((), []):
        raise OfficialImportError(f"{what} was built with positional args; expected keyword arguments only")
    kw = plain(rec.state.get("_init_kwargs"))
    if not isinstance(kw, dict):
        raise OfficialImportError(f"{what} carries no init kwargs")
    return kw


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
    kw = _init_kwargs(data[gens[0]], gens[0])
    sections = dict(mapping=_mapping_section(kw, _as_int(kw.get("z_dim", 512), "z_dim")),
                    synthesis=_synthesis_section(kw, _as_int(kw["w_dim"], "w_dim")))
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

    sections = _generator_sections(_init_kwargs(g_rec, g_name))
    d_tensors = module_tensors(data["D"]) if "D" in wanted else {}
    if "D" in wanted:
        sections["discriminator"] = _discriminator_section(_init_kwargs(data["D"], "D"), d_tensors)
    else:  # no D imported: a default D that fits the generator (for fine-tuning with a fresh D)
        syn, g_cfg = sections["synthesis"], plain(g_rec.state.get("cfg")) or {}
        sections["discriminator"] = dict(
            channel_base=syn["channel_base"], channel_max=syn["channel_max"], num_fp16_res=syn["num_fp16_res"],
            conv_clamp=syn["conv_clamp"], concat_res=min(16, syn["img_resolution"] // 2),
            max_num_frames=_as_int(_get(g_cfg, "sampling.max_num_frames", 1024), "sampling.max_num_frames"))
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
        "reference_max_num_frames": _jsonable(_get(g_cfg, "sampling.max_num_frames", None)),
        "generator_cfg": _jsonable(g_cfg), "training_set_kwargs": _jsonable(plain(data.get("training_set_kwargs"))),
        "stats": _jsonable(plain(data.get("stats"))),
        "skipped": sorted(str(k) for k in data if k not in wanted),
        "augment_p": _augment_p(data.get("augment_pipe")),
    }
    log.info("imported %s from %s (%d tensors)", ", ".join(wanted), path, len(tensors))
    return Checkpoint(cfg, tensors, metadata)
