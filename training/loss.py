"""StyleGAN2 loss on sparse clips (paper sections 3.3, 4.1): non-saturating logistic loss and lazy R1
(docs/reference.md, 'Training').

G renders k frames per video at (fractional) times t; D judges the k frames of a clip together with
their time gaps. Real and fake clips pass through the same augmentation (one transform per clip).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.motion import Motion


class StyleGANVLoss:
    """Accumulates gradients for one phase: "Gmain", "Dmain" or "Dreg"."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, augment_pipe: torch.nn.Module | None,
                 r1_gamma: float, force_fp32: bool = False):
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma, self.force_fp32 = float(r1_gamma), force_fp32

    def run_G(self, z: torch.Tensor, c: torch.Tensor, t: torch.Tensor, motion: Motion,
              update_w_avg: bool = False) -> torch.Tensor:
        """z [N, z_dim], t [N, k] -> frames [N, k, C, H, W]."""
        ws = self.G.mapping(z, c if c.shape[1] else None, update_w_avg=update_w_avg)
        img = self.G.synthesis(ws, t, motion, c=c if c.shape[1] else None, force_fp32=self.force_fp32)
        assert img.shape[:2] == t.shape, f"G gave {tuple(img.shape)} for t {tuple(t.shape)}"
        return img

    def run_D(self, img: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """img [N, k, C, H, W], t [N, k] -> logits [N]."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, t, c if c.shape[1] else None, force_fp32=self.force_fp32)

    def accumulate(self, phase: str, real: torch.Tensor, real_t: torch.Tensor, real_c: torch.Tensor,
                   gen_z: torch.Tensor, gen_t: torch.Tensor, gen_c: torch.Tensor, gen_motion: Motion,
                   gain: float = 1.0) -> dict[str, torch.Tensor]:
        """Backpropagate one phase's loss (times gain); returns detached statistics.

        real [N, k, C, H, W] float in [-1, 1]; real_t / gen_t [N, k]; real_c / gen_c [N, c_dim].
        """
        stats: dict[str, torch.Tensor] = {}
        if phase == "Gmain":  # maximise D's logits on fakes: softplus(-D(G(z)))
            fake = self.run_G(gen_z, gen_c, gen_t, gen_motion, update_w_avg=True)
            logits = self.run_D(fake, gen_t, gen_c)
            loss = F.softplus(-logits)
            loss.mean().mul(gain).backward()
            stats["Loss/G/loss"] = loss.detach().mean()
            stats["Loss/scores/fake"] = logits.detach().mean()
        elif phase == "Dmain":  # minimise D on fakes, maximise on reals
            with torch.no_grad():
                fake = self.run_G(gen_z, gen_c, gen_t, gen_motion)
            logits_fake = self.run_D(fake, gen_t, gen_c)
            logits_real = self.run_D(real.detach(), real_t, real_c)
            loss = F.softplus(logits_fake) + F.softplus(-logits_real)
            loss.mean().mul(gain).backward()
            stats["Loss/D/loss"] = loss.detach().mean()
            stats["Loss/scores/real"] = logits_real.detach().mean()
            stats["Loss/signs/real"] = logits_real.detach().sign().mean()
            stats["_real_logits"] = logits_real.detach()
        elif phase == "Dreg":  # lazy R1: gamma/2 * |grad_x D(x)|^2, averaged over a clip's frames
            x = real.detach().requires_grad_(True)
            logits = self.run_D(x, real_t, real_c)
            (grad,) = torch.autograd.grad(logits.sum(), [x], create_graph=True)
            penalty = grad.square().sum(dim=[2, 3, 4]).mean(dim=1)  # [N, k, C, H, W] -> [N]
            loss = penalty * (self.r1_gamma / 2)
            (logits * 0 + loss).mean().mul(gain).backward()
            stats["Loss/r1_penalty"] = penalty.detach().mean()
            stats["Loss/D/reg"] = loss.detach().mean()
        else:
            raise ValueError(f"unknown phase {phase!r}")
        return stats
