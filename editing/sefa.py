"""Discovered edit directions without CLIP: closed-form factorization of the style affine weights (SeFa,
Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs", CVPR 2021).

Each synthesis conv's style is an affine map of its w: s = A w + b. A unit change of w along n moves the
styles by A n, so the directions that move styles most are the top eigenvectors of A^T A. As SeFa does,
A stacks the chosen layers' weights, with each output channel's row normalized to unit length. Only the
convs are used, not the toRGB layers. Per layer group (core.directions: coarse / middle / fine / all) this
is one symmetric eigendecomposition of a w_dim x w_dim matrix: milliseconds.
Each direction is scaled to one standard deviation of random w along it, so strength 1 is a typical step.
Results are cached on disk by the model's weights hash.
"""

from __future__ import annotations

import numpy as np
import torch

from core.checkpoint import weights_sha256
from core.directions import Direction, group_indices, layer_mask
from core.files import atomic_savez
from core.resolve import cache_dir

CACHE_VERSION = 1


def conv_affines(G, indices: list[int]) -> list[torch.Tensor]:
    """The style affine weights `[C, w_dim]` of every synthesis conv that reads one of the ws `indices`."""
    out, w_idx = [], 0
    wanted = set(indices)
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{res}")
        convs = [block.conv1] if block.num_conv == 1 else [block.conv0, block.conv1]
        for k, conv in enumerate(convs):
            if w_idx + k in wanted:
                out.append(conv.affine.weight.detach().double().cpu())
        w_idx += block.num_conv
    return out


def factorize(G, group: str = "all", k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """-> (directions [k, w_dim] unit rows, eigenvalues [k]), largest first; each sign fixed so that its
    largest-magnitude entry is positive (eigenvectors are defined up to sign)."""
    weights = conv_affines(G, group_indices(G, group))
    if not weights:
        raise ValueError(f"no synthesis conv reads the {group!r} layers of this model")
    a = torch.cat([w / w.norm(dim=1, keepdim=True).clamp_min(1e-12) for w in weights])  # [sum C, w_dim]
    values, vectors = torch.linalg.eigh(a.T @ a)  # ascending
    k = min(k, vectors.shape[1])
    vectors, values = vectors[:, -k:].flip(1).T, values[-k:].flip(0)  # [k, w_dim], largest first
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    return (vectors * signs).numpy(), values.numpy()


@torch.no_grad()
def w_spread(G, vectors: np.ndarray, num_samples: int = 2000) -> np.ndarray:
    """Std of random w (seeded z) along each unit vector -> [k]."""
    z = torch.from_numpy(np.random.RandomState(0).randn(num_samples, G.z_dim)).float().to(G.mapping.w_avg.device)
    w = G.mapping(z, None)[:, 0].double().cpu()  # [S, w_dim]
    return (w @ torch.from_numpy(vectors).T).std(0).numpy()


def sefa_directions(G, group: str = "all", k: int = 8, model_hash: str | None = None,
                    use_cache: bool = True) -> tuple[list[Direction], np.ndarray]:
    """The top-k SeFa directions of `group` as core.directions.Direction (strength 1 = one std of w), and the
    eigenvalues. Cached under <cache>/sefa/ by the model's weights hash (`model_hash` if known)."""
    model_hash = model_hash or weights_sha256(G)
    path = cache_dir() / "sefa" / f"{model_hash[:24]}-{group}-k{k}-v{CACHE_VERSION}.npz"
    data = None
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                data = f["vectors"], f["values"], f["scales"]
        except (OSError, KeyError, ValueError):
            data = None  # a damaged cache entry is recomputed
    if data is None:
        vectors, values = factorize(G, group, k)
        data = vectors, values, w_spread(G, vectors)
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_savez(path, vectors=data[0], values=data[1], scales=data[2])
    vectors, values, scales = data
    mask = layer_mask(G, group)  # [num_ws, 1]
    dirs = [Direction(mask * torch.from_numpy(v * s).float()[None], name=f"SeFa {group} #{i}",
                      source=f"sefa {group} k={k} #{i} of {model_hash[:12]}")
            for i, (v, s) in enumerate(zip(vectors, scales))]
    return dirs, values


def direction_by_example(ws_a: torch.Tensor, ws_b: torch.Tensor, name: str = "by example",
                         source: str = "") -> Direction:
    """The difference of two latents `[1, num_ws, w_dim]` (a - b) as a direction: strength 1 turns b into a."""
    if ws_a.shape != ws_b.shape or ws_a.ndim != 3 or ws_a.shape[0] != 1:
        raise ValueError(f"two latents [1, num_ws, w_dim] are needed, got {tuple(ws_a.shape)} and {tuple(ws_b.shape)}")
    return Direction((ws_a - ws_b)[0].detach().float().cpu(), name=name, source=source)
