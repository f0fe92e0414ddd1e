"""The configuration inside the paper's released pickles -> our `ModelConfig` sections.

The records that `core.official_pickle` reads (EasyDict, OmegaConf containers and nodes) become plain
values with their `${...}` interpolations resolved (`plain`); the generator's and discriminator's init
kwargs and run config then give the `mapping`, `motion`, `synthesis` and `discriminator` sections, or an
`OfficialImportError` naming the unsupported variant. Used by `core.official.import_official`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from core.official_pickle import ObjectRecord, OfficialImportError, PersistentRecord, TypeRef

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

# ------------------------------------------------------------------------------------------ config derivation

def cfg_get(d: dict, path: str, default=KeyError):
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


def as_int(x, what: str) -> int:
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


def synthesis_section(kw: dict, w_dim: int) -> dict:
    syn = kw.get("synthesis_kwargs") or {}
    _check_kwargs(syn, _SYNTHESIS_KEYS, "synthesis_kwargs", w_dim)
    clamp = syn.get("conv_clamp")
    return dict(img_resolution=as_int(kw["img_resolution"], "img_resolution"),
                img_channels=as_int(kw.get("img_channels", 3), "img_channels"),
                channel_base=as_int(syn.get("channel_base", 32768), "channel_base"),
                channel_max=as_int(syn.get("channel_max", 512), "channel_max"),
                num_fp16_res=as_int(syn.get("num_fp16_res", 0), "num_fp16_res"),
                conv_clamp=None if clamp is None else float(clamp))


def mapping_section(kw: dict, z_dim: int) -> dict:
    w_dim = as_int(kw["w_dim"], "w_dim")
    mk = kw.get("mapping_kwargs") or {}
    _check_kwargs(mk, _MAPPING_KEYS, "mapping_kwargs", w_dim)
    return dict(z_dim=z_dim, c_dim=as_int(kw.get("c_dim", 0), "c_dim"), w_dim=w_dim,
                num_layers=as_int(mk.get("num_layers", 8), "mapping num_layers"),
                lr_multiplier=float(mk.get("lr_multiplier", 0.01)), w_avg_beta=float(mk.get("w_avg_beta", 0.995)))


def generator_sections(kw: dict) -> dict:
    """G init kwargs + cfg (model.generator of the run's config) -> ModelConfig sections."""
    cfg = kw.get("cfg")
    if not isinstance(cfg, dict):
        raise OfficialImportError("the generator's init kwargs carry no cfg")
    if cfg_get(cfg, "use_noise", True):
        raise _unsupported("per-pixel noise inputs (use_noise=true)")
    if cfg_get(cfg, "input.type") != "temporal":
        raise _unsupported(f"generator input type {cfg_get(cfg, 'input.type')!r}")
    if cfg_get(cfg, "motion.gen_strategy") != "conv":
        raise _unsupported(f"motion generation strategy {cfg_get(cfg, 'motion.gen_strategy')!r}")
    if not cfg_get(cfg, "motion.fourier"):
        raise _unsupported("motion without the Fourier time encoder (motion.fourier=false)")
    if cfg_get(cfg, "time_enc.cond_type") != "concat_const":
        raise _unsupported(f"time conditioning {cfg_get(cfg, 'time_enc.cond_type')!r}")
    motion_z = as_int(cfg_get(cfg, "motion.z_dim"), "motion.z_dim")
    if as_int(cfg_get(cfg, "motion.v_dim", motion_z), "motion.v_dim") != motion_z:
        raise _unsupported("motion.v_dim different from motion.z_dim")
    motion = dict(z_dim=motion_z,
                  delta_z=as_int(cfg_get(cfg, "motion.motion_z_distance"), "motion.motion_z_distance"),
                  kernel_size=as_int(cfg_get(cfg, "motion.kernel_size"), "motion.kernel_size"),
                  num_freqs=as_int(cfg_get(cfg, "time_enc.dim"), "time_enc.dim"),
                  min_period=float(cfg_get(cfg, "time_enc.min_period_len")),
                  max_period=float(cfg_get(cfg, "time_enc.max_period_len")), lr_multiplier=0.01)
    z_dim = as_int(kw.get("z_dim", cfg_get(cfg, "z_dim")), "z_dim")
    return dict(mapping=mapping_section(kw, z_dim), motion=motion,
                synthesis=synthesis_section(kw, as_int(kw["w_dim"], "w_dim")))


def discriminator_section(kw: dict, tensors: dict[str, torch.Tensor]) -> dict:
    cfg = kw.get("cfg")
    if not isinstance(cfg, dict):
        raise OfficialImportError("the discriminator's init kwargs carry no cfg")
    if kw.get("architecture", "resnet") != "resnet":
        raise _unsupported(f"discriminator architecture {kw['architecture']!r}")
    if kw.get("cmap_dim") is not None:
        raise _unsupported(f"discriminator cmap_dim={kw['cmap_dim']}")
    if cfg_get(cfg, "dummy_c", False):
        raise _unsupported("discriminator with dummy_c=true")
    num_frames = as_int(cfg_get(cfg, "sampling.num_frames_per_video"), "sampling.num_frames_per_video")
    if num_frames > 1 and cfg_get(cfg, "sampling.type", "random") == "uniform":
        raise _unsupported("discriminator time encoding of uniform sampling (one gap)")
    if cfg_get(cfg, "skip_small_t_freqs", 0):
        raise _unsupported("discriminator skip_small_t_freqs")
    block = kw.get("block_kwargs") or {}
    if sorted(set(block) - {"freeze_layers", "fp16_channels_last"}):
        raise _unsupported(f"discriminator block_kwargs {sorted(block)}")
    epi = kw.get("epilogue_kwargs") or {}
    mk = kw.get("mapping_kwargs") or {}
    embed = tensors.get("time_encoder.const_embed.weight")
    clamp = kw.get("conv_clamp")
    return dict(channel_base=as_int(kw.get("channel_base", 32768), "D channel_base"),
                channel_max=as_int(kw.get("channel_max", 512), "D channel_max"),
                num_fp16_res=as_int(kw.get("num_fp16_res", 0), "D num_fp16_res"),
                conv_clamp=None if clamp is None else float(clamp), num_frames=num_frames,
                concat_res=as_int(cfg_get(cfg, "concat_res"), "concat_res"),
                num_frames_div_factor=as_int(cfg_get(cfg, "num_frames_div_factor"), "num_frames_div_factor"),
                mbstd_group_size=as_int(epi.get("mbstd_group_size", 4), "mbstd_group_size"),
                mbstd_num_channels=as_int(epi.get("mbstd_num_channels", 1), "mbstd_num_channels"),
                max_num_frames=as_int(cfg_get(cfg, "sampling.max_num_frames"), "sampling.max_num_frames"),
                time_embed_dim=int(embed.shape[1]) if embed is not None and embed.ndim == 2 else 256,
                mapping_layers=as_int(mk.get("num_layers", 8), "D mapping num_layers"))


def init_kwargs(rec: PersistentRecord, what: str) -> dict:
    if (rec.state.get("_init_args") or ()) not in ((), []):
        raise OfficialImportError(f"{what} was built with positional args; expected keyword arguments only")
    kw = plain(rec.state.get("_init_kwargs"))
    if not isinstance(kw, dict):
        raise OfficialImportError(f"{what} carries no init kwargs")
    return kw
