"""A tiny random-weight CLIP of open_clip's own class, for tests and offline demos (not for real edits)."""

from __future__ import annotations

import torch

from editing.clip_weights import ClipModel


def tiny_clip(seed: int = 0, image_size: int = 32, embed_dim: int = 32) -> ClipModel:
    """open_clip.model.CLIP shrunk (1-layer ViT and text transformer, width 32), real BPE tokenizer."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=image_size)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)
    with torch.random.fork_rng(devices=[]):  # open_clip initializes from the global RNG
        torch.manual_seed(seed)
        model = CLIP(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text)
    return ClipModel(model, open_clip.get_tokenizer("ViT-B-32"), f"tiny-clip-{seed}")
