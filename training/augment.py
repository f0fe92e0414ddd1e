"""Adaptive discriminator augmentation (ADA, Karras et al. 2020), "bgc" pipeline, video-consistent.

Every transform is drawn once per clip and applied identically to all k frames of that clip
(docs/reference.md, 'Augmentation'): D must see the same geometry and colour across a clip's frames, or it
could tell real from fake by the inconsistency alone.

Geometric transforms are composed into one inverse affine matrix per clip and applied as ADA does,
so that they do not leak into G (ADA paper, appendix B.3): reflect-pad by the margin the transforms
need, upsample 2x with the Symlet-6 wavelet low-pass, sample bilinearly, low-pass and downsample 2x
again. The up/down pair is an orthogonal wavelet's, so an identity transform returns the input.
Colour transforms are one 4x4 matrix per clip acting on homogeneous RGB in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.ops.upfirdn2d import downsample2d, setup_filter, upsample2d
from training.grid_sample import grid_sample

# Low-pass decomposition filter of the Symlet-6 wavelet (Daubechies' least-asymmetric wavelet with six
# vanishing moments; the standard coefficients, sum sqrt(2)). ADA's anti-aliasing filter for geometry.
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)


@dataclass(frozen=True)
class AugmentConfig:
    """Probability multipliers (0 = off) and strengths, ADA's defaults."""

    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    xint_max: float = 0.125
    scale_std: float = 0.2
    rotate_max: float = 1.0
    aniso_std: float = 0.2
    xfrac_std: float = 0.125
    brightness_std: float = 0.2
    contrast_std: float = 0.5
    hue_max: float = 1.0
    saturation_std: float = 1.0


_GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")

PIPELINES = {
    "blit": AugmentConfig(xflip=1, rotate90=1, xint=1),
    "geom": AugmentConfig(scale=1, rotate=1, aniso=1, xfrac=1),
    "color": AugmentConfig(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    "bgc": AugmentConfig(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                         brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
}


def _eye(n: int, size: int, device) -> torch.Tensor:
    return torch.eye(size, device=device).repeat(n, 1, 1)


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(len(sx), 3, sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(len(tx), 3, tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _rotate2d(theta: torch.Tensor) -> torch.Tensor:
    m = _eye(len(theta), 3, theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _rotate3d(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation about the unit axis v[:3] by theta (Rodrigues), as a 4x4 homogeneous matrix."""
    x, y, z = v[0], v[1], v[2]
    c, s = torch.cos(theta), torch.sin(theta)
    cc = 1 - c
    m = _eye(len(theta), 4, theta.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s
    m[:, 2, 0], m[:, 2, 1], m[:, 2, 2] = z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c
    return m


class AugmentPipe(torch.nn.Module):
    """x [N, T, C, H, W] in [-1, 1] -> same shape; one random transform per clip, shared by its T frames.

    `p` (a buffer, so it is saved and identical on every rank) is the probability of each transform.
    """

    def __init__(self, cfg: AugmentConfig | str = "bgc", p: float = 0.0):
        super().__init__()
        self.cfg = PIPELINES[cfg] if isinstance(cfg, str) else cfg
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("Hz_geom", setup_filter(SYM6), persistent=False)

    def _on(self, strength: float, n: int, device, p: torch.Tensor | None = None) -> torch.Tensor:
        """Per-clip mask: transform applied with probability strength * p."""
        prob = (self.p if p is None else p) * strength
        return torch.rand([n], device=device) < prob

    def _geometric(self, n: int, res: int, device) -> torch.Tensor:
        """Inverse affine map (output -> input), normalised coords [-1, 1], [N, 3, 3]."""
        c, G = self.cfg, _eye(n, 3, device)
        one, zero = torch.ones([n], device=device), torch.zeros([n], device=device)
        if c.xflip > 0:
            i = torch.floor(torch.rand([n], device=device) * 2)
            i = torch.where(self._on(c.xflip, n, device), i, zero)
            G = G @ _scale2d(1 - 2 * i, one)
        if c.rotate90 > 0:
            i = torch.floor(torch.rand([n], device=device) * 4)
            i = torch.where(self._on(c.rotate90, n, device), i, zero)
            G = G @ _rotate2d(math.pi / 2 * i)  # ADA's rotate2d_inv(-pi/2 * i)
        if c.xint > 0:  # whole-pixel shifts: 2 / res per pixel in normalised coords
            t = (torch.rand([n, 2], device=device) * 2 - 1) * c.xint_max
            t = torch.where(self._on(c.xint, n, device)[:, None], t, torch.zeros_like(t))
            t = torch.round(t * res) * 2 / res
            G = G @ _translate2d(-t[:, 0], -t[:, 1])
        if c.scale > 0:
            s = torch.exp2(torch.randn([n], device=device) * c.scale_std)
            s = torch.where(self._on(c.scale, n, device), s, one)
            G = G @ _scale2d(1 / s, 1 / s)
        p_rot = 1 - torch.sqrt((1 - self.p * c.rotate).clamp(0, 1))  # rotate twice: total prob = p
        if c.rotate > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * c.rotate_max
            theta = torch.where(self._on(1.0, n, device, p_rot), theta, zero)
            G = G @ _rotate2d(theta)  # ADA's rotate2d_inv(-theta)
        if c.aniso > 0:
            s = torch.exp2(torch.randn([n], device=device) * c.aniso_std)
            s = torch.where(self._on(c.aniso, n, device), s, one)
            G = G @ _scale2d(1 / s, s)
        if c.rotate > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * c.rotate_max
            theta = torch.where(self._on(1.0, n, device, p_rot), theta, zero)
            G = G @ _rotate2d(theta)  # ADA's rotate2d_inv(-theta)
        if c.xfrac > 0:
            t = torch.randn([n, 2], device=device) * c.xfrac_std
            t = torch.where(self._on(c.xfrac, n, device)[:, None], t, torch.zeros_like(t))
            G = G @ _translate2d(-t[:, 0] * 2, -t[:, 1] * 2)
        return G

    def _color(self, n: int, device) -> torch.Tensor:
        """Colour transform on homogeneous RGB, [N, 4, 4]."""
        c, C = self.cfg, _eye(n, 4, device)
        zero, one = torch.zeros([n], device=device), torch.ones([n], device=device)
        v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)  # luma axis
        vv = torch.outer(v, v)
        if c.brightness > 0:
            b = torch.randn([n], device=device) * c.brightness_std
            b = torch.where(self._on(c.brightness, n, device), b, zero)
            T = _eye(n, 4, device)
            T[:, :3, 3] = b[:, None]
            C = T @ C
        if c.contrast > 0:
            s = torch.exp2(torch.randn([n], device=device) * c.contrast_std)
            s = torch.where(self._on(c.contrast, n, device), s, one)
            S = _eye(n, 4, device)
            S[:, 0, 0], S[:, 1, 1], S[:, 2, 2] = s, s, s
            C = S @ C
        if c.lumaflip > 0:
            i = torch.floor(torch.rand([n], device=device) * 2)
            i = torch.where(self._on(c.lumaflip, n, device), i, zero)
            C = (torch.eye(4, device=device) - 2 * vv * i[:, None, None]) @ C
        if c.hue > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * c.hue_max
            theta = torch.where(self._on(c.hue, n, device), theta, zero)
            C = _rotate3d(v, theta) @ C
        if c.saturation > 0:
            s = torch.exp2(torch.randn([n], device=device) * c.saturation_std)
            s = torch.where(self._on(c.saturation, n, device), s, one)
            C = (vv + (torch.eye(4, device=device) - vv) * s[:, None, None]) @ C
        return C

    def _resample(self, y: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """Apply inverse maps G [B, 3, 3] (normalised coords) to y [B, C, H, W] through ADA's 2x grid."""
        b, ch, h, w = y.shape
        dev = y.device

        def scale(sx, sy):  # one [3, 3] matrix, broadcast over the batch by matmul
            return torch.tensor([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]], device=dev)

        def translate(tx, ty):
            return torch.tensor([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]], device=dev)

        # To pixel units centred on the image (x_pix = x_norm * W / 2 with align_corners=False).
        G = scale(w / 2, h / 2) @ G @ scale(2 / w, 2 / h)
        # Margin every clip's transform reads outside the frame, plus the filter's reach.
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1.0, 1.0, 1.0, 1.0]], device=dev)
        cp = (G @ corners)[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, B * 4]
        pad = self.Hz_geom.shape[0] // 4
        margin = torch.cat([-cp, cp]).amax(dim=1)  # [x0, y0, x1, y1]
        margin = margin + torch.tensor([pad * 2 - cx, pad * 2 - cy] * 2, device=dev)
        lim = torch.tensor([w - 1, h - 1] * 2, device=dev, dtype=margin.dtype)
        mx0, my0, mx1, my1 = (int(v) for v in margin.clamp(min=0).minimum(lim).ceil().tolist())
        y = F.pad(y, [mx0, mx1, my0, my1], mode="reflect")
        G = translate((mx0 - mx1) / 2, (my0 - my1) / 2) @ G
        # Upsample 2x: pixel centres move to 2x + 0.5 (in the half-pixel convention).
        y = upsample2d(y, self.Hz_geom, up=2)
        G = translate(-0.5, -0.5) @ scale(2, 2) @ G @ scale(0.5, 0.5) @ translate(0.5, 0.5)
        # Sample the output grid (2x the frame plus the filter's margin), then low-pass and crop back.
        out_h, out_w = (h + pad * 2) * 2, (w + pad * 2) * 2
        G = scale(2 / y.shape[3], 2 / y.shape[2]) @ G @ scale(out_w / 2, out_h / 2)
        grid = F.affine_grid(G[:, :2, :], [b, ch, out_h, out_w], align_corners=False)
        y = grid_sample(y, grid)  # bilinear, zeros, align_corners=False; double-backward safe on GPU
        y = downsample2d(y, self.Hz_geom, down=2, padding=-pad * 2, flip_filter=True)
        assert y.shape == (b, ch, h, w), f"resampled to {tuple(y.shape)}, expected {(b, ch, h, w)}"
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 5, f"expected [N, T, C, H, W], got {list(x.shape)}"
        n, t, ch, h, w = x.shape
        assert h == w, "augmentation expects square frames"
        if float(self.p) <= 0:
            return x
        dev, dtype = x.device, x.dtype
        G = self._geometric(n, h, dev)
        C = self._color(n, dev)
        y = x.reshape(n * t, ch, h, w).float()
        # Same matrix for every frame of a clip: repeat each clip's parameters T times. A pipeline without
        # geometric transforms skips the resampling, as ADA does.
        if any(getattr(self.cfg, k) > 0 for k in _GEOMETRIC):
            y = self._resample(y, G.repeat_interleave(t, dim=0))
        Ct = C.repeat_interleave(t, dim=0)
        if ch == 3:
            y = torch.einsum("nij,njhw->nihw", Ct[:, :3, :3], y) + Ct[:, :3, 3, None, None]
        elif ch == 1:  # grayscale: average the colour matrix over RGB (as ADA does)
            Cm = Ct[:, :3, :].mean(dim=1)
            y = y * Cm[:, :3].sum(dim=1)[:, None, None, None] + Cm[:, 3][:, None, None, None]
        return y.reshape(n, t, ch, h, w).to(dtype)


class AdaController:
    """Adjusts `pipe.p` so that E[sign(D(real))] tracks `target` (ADA's overfitting heuristic r_t).

    Call `accumulate(real_logits)` every step and `update(batch_clips)` every step; p moves by
    sign(r_t - target) * batch * interval / (ada_kimg * 1000) every `interval` steps.
    """

    def __init__(self, pipe: AugmentPipe, target: float = 0.6, interval: int = 4, ada_kimg: float = 500,
                 all_reduce=None):
        self.pipe, self.target, self.interval, self.ada_kimg = pipe, target, interval, ada_kimg
        self.all_reduce = all_reduce  # callable summing a tensor over ranks (DDP), or None
        self._sum = torch.zeros([2], dtype=torch.float64, device=pipe.p.device)  # (sum of signs, count)
        self._steps = 0
        self.last_rt: float | None = None

    def accumulate(self, real_logits: torch.Tensor) -> None:
        s = real_logits.detach().sign().to(torch.float64)
        self._sum[0] += s.sum()
        self._sum[1] += s.numel()

    def update(self, batch_clips: int) -> None:
        self._steps += 1
        if self._steps % self.interval:
            return
        total = self._sum.clone()
        if self.all_reduce is not None:
            total = self.all_reduce(total)
        self._sum.zero_()
        if total[1] <= 0:
            return
        self.last_rt = float(total[0] / total[1])
        adjust = math.copysign(1.0, self.last_rt - self.target) if self.last_rt != self.target else 0.0
        step = adjust * batch_clips * self.interval / (self.ada_kimg * 1000)
        self.pipe.p.copy_((self.pipe.p + step).clamp(0.0, 1.0))
