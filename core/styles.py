"""StyleSpace offsets: shift the styles s = affine(w) of chosen synthesis layers (StyleCLIP's global
directions act there). Lives in core so that every renderer (CLI, studio, editing) honours a latent
file's offsets the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

STYLE_PREFIX = "style/"  # a latent .npz stores the offset of layer L under key "style/L"


def offsets_from_arrays(arrays: dict) -> dict[str, torch.Tensor]:
    """{layer: offset [C] float32} from a latent .npz's arrays (keys "style/<layer>")."""
    return {k[len(STYLE_PREFIX):]: torch.from_numpy(v.astype("float32")) for k, v in arrays.items()
            if k.startswith(STYLE_PREFIX)}


class StyleError(ValueError):
    """Offsets that name layers this generator does not have, or a generator without style layers."""


def style_layers(G, include_torgb: bool = False) -> list[tuple[str, torch.nn.Module]]:
    """(name, affine module) of every synthesis layer, in synthesis order. StyleCLIP leaves toRGB out."""
    layers = [(name[: -len(".affine")], m) for name, m in G.synthesis.named_modules()
              if name.endswith(".affine")]
    if not include_torgb:
        layers = [(n, m) for n, m in layers if not n.endswith("torgb")]
    if not layers:
        raise StyleError("the generator's synthesis network has no `affine` layers to edit")
    return layers


@contextlib.contextmanager
def style_offsets(G, offsets: dict[str, torch.Tensor] | None) -> Iterator[None]:
    """Within the block, layer `name`'s styles become affine(w) + offsets[name].

    An offset is [C] (every sample) or [N, C] (per sample; repeated over the T frames of each sample,
    since synthesis runs N * T frames as one batch).
    """
    if not offsets:
        yield
        return
    modules = dict(style_layers(G, include_torgb=True))
    unknown = sorted(set(offsets) - set(modules))
    if unknown:
        raise StyleError(f"unknown style layers {unknown}; this model has {sorted(modules)}")
    for name, off in offsets.items():
        width = modules[name].weight.shape[0]
        if off.shape[-1] != width or off.ndim not in (1, 2):
            raise StyleError(f"style offset for {name} has shape {tuple(off.shape)}; the layer has {width} "
                             "styles ([C] or [N, C] expected)")

    def make_hook(offset: torch.Tensor):
        def hook(_module, _inputs, styles: torch.Tensor) -> torch.Tensor:
            off = offset.to(styles.device, styles.dtype)
            if off.ndim == 2 and off.shape[0] != styles.shape[0]:
                assert styles.shape[0] % off.shape[0] == 0, (off.shape, styles.shape)
                off = off.repeat_interleave(styles.shape[0] // off.shape[0], dim=0)
            return styles + off
        return hook

    handles = [modules[name].register_forward_hook(make_hook(off)) for name, off in offsets.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
