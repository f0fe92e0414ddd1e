"""Motion: addressable noise tokens, the conv1d motion mapping F_m, and the acyclic positional
encoding of the paper (section 3.1, eqs. 2-5).

Token k sits at time k * delta_z. The two padding-less convs turn tokens j .. j + 2(K-1) into motion
code u_j, so a frame at time t, which needs u_i and u_{i+1} with i = floor(t / delta_z), depends only
on tokens i .. i + 2(K-1) + 1: constant work and memory for any t.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from core.config import MotionConfig
from core.layers import EqLRConv1d, FullyConnectedLayer
from core.noise import token_noise

MAX_SPAN_CODES = 64  # above this, frames of one video get separate token windows instead of one range


class MotionError(ValueError):
    """Motion noise cannot serve the requested times."""


class Motion:
    """Motion noise for a batch of N videos: seeded (addressable), an explicit tensor, or both.

    Seeded: token k of seed s is `core.noise.token_noise(s, k)`, a pure function of (s, k).
    Explicit: `noise [N, L, z_dim]`, token k = `noise[:, k]` (as in the reference implementation),
    which limits times to t < (L - 2(K-1) - 1) * delta_z.
    Both (an inverted clip): tokens k < L from `noise`, later ones from the seeds, so the motion goes on
    past the clip; the codes near the join mix both through F_m's convolutions, and v_t stays continuous.
    `origin` (seed s0, time t0): see `from_seeds`. `loop` (period P, blend W) in model frames: see
    `MotionMappingNetwork.forward`.
    """

    def __init__(self, seeds: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                 origin: tuple[int, float] | None = None, loop: tuple[float, float] | None = None):
        assert seeds is not None or noise is not None, "give seeds, noise, or both"
        if origin is not None:
            origin = (int(origin[0]), float(origin[1]))
            if origin[0] < 0 or not (np.isfinite(origin[1]) and origin[1] >= 0):
                raise MotionError(f"a motion origin is (seed >= 0, time >= 0), got {origin}")
        if loop is not None:
            loop = (float(loop[0]), float(loop[1]))
            if not (np.isfinite(loop[0]) and 0 < loop[1] <= loop[0]):
                raise MotionError(f"a loop is (period > 0, blend in (0, period]) in frames, got {loop}")
        self.origin, self.loop = origin, loop
        if seeds is not None:
            seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
            if (seeds < 0).any():
                raise MotionError("motion seeds must be >= 0")
        if noise is not None and noise.ndim != 3:
            raise MotionError(f"motion noise must be [N, L, z_dim], got {tuple(noise.shape)}")
        if seeds is not None and noise is not None and len(seeds) != noise.shape[0]:
            raise MotionError(f"{len(seeds)} continuation seeds for {noise.shape[0]} noise sequences")
        self.seeds, self.noise = seeds, noise

    @classmethod
    def from_seeds(cls, seeds: Sequence[int] | torch.Tensor | int, origin: tuple[int, float] | None = None,
                   loop: tuple[float, float] | None = None) -> Motion:
        """`origin` = (seed s0, time t0): every video's motion code is shifted by the constant that makes
        its code at t0 equal to seed s0's, so all videos pass through the same frame at t0 (the frame of a
        projected photo) and move from there as their own seeds do (see `MotionMappingNetwork.forward`)."""
        return cls(seeds=torch.as_tensor(seeds, dtype=torch.int64).reshape(-1), origin=origin, loop=loop)

    @classmethod
    def from_noise(cls, noise: torch.Tensor, continue_seeds: Sequence[int] | None = None,
                   loop: tuple[float, float] | None = None) -> Motion:
        """Explicit tokens `[N, L, z_dim]`; with `continue_seeds`, tokens from L on come from those seeds."""
        seeds = None if continue_seeds is None else torch.as_tensor(continue_seeds, dtype=torch.int64)
        return cls(seeds=seeds, noise=noise, loop=loop)

    @classmethod
    def random(cls, n: int, generator: torch.Generator | None = None) -> Motion:
        return cls(seeds=torch.randint(0, 2**62, (n,), generator=generator, dtype=torch.int64))

    @classmethod
    def coerce(cls, motion, n: int) -> Motion:
        """Accept a Motion, seeds (int / list / 1-D tensor) or a noise tensor `[N, L, z_dim]`."""
        if not isinstance(motion, Motion):
            if isinstance(motion, torch.Tensor) and motion.ndim == 3:
                motion = cls.from_noise(motion)
            else:
                motion = cls.from_seeds(motion)
        if len(motion) == 1 and n > 1:
            motion = motion.repeat(n)
        if len(motion) != n:
            raise MotionError(f"motion has {len(motion)} videos, the batch has {n}")
        return motion

    def __len__(self) -> int:
        return len(self.seeds) if self.seeds is not None else self.noise.shape[0]

    def repeat(self, n: int) -> Motion:
        seeds = None if self.seeds is None else self.seeds.repeat(n)
        noise = None if self.noise is None else self.noise.repeat(n, 1, 1)
        return Motion(seeds=seeds, noise=noise, origin=self.origin, loop=self.loop)

    def replace(self, **changes) -> Motion:
        """A copy with some of seeds / noise / origin / loop replaced."""
        fields = {"seeds": self.seeds, "noise": self.noise, "origin": self.origin, "loop": self.loop, **changes}
        return Motion(**fields)

    def tokens(self, sample: torch.Tensor, start: torch.Tensor, length: int, z_dim: int) -> torch.Tensor:
        """Tokens start[m] .. start[m] + length - 1 of video sample[m] -> `[M, length, z_dim]`."""
        k = start.unsqueeze(1) + torch.arange(length, device=start.device)  # [M, length]
        seeded = None
        if self.seeds is not None:
            seeded = token_noise(self.seeds.to(start.device)[sample].unsqueeze(1), k, z_dim)
            if self.noise is None:
                return seeded
        noise = self.noise.to(start.device)
        if noise.shape[2] < z_dim:
            raise MotionError(f"motion noise has {noise.shape[2]} dims, the model needs {z_dim}")
        inside = k < noise.shape[1]
        if seeded is None and not bool(inside.all()):
            raise MotionError(f"explicit motion noise has {noise.shape[1]} tokens; these times need "
                              f"{int(k.max()) + 1} (use seeded motion for arbitrary t)")
        explicit = noise[sample.unsqueeze(1), k.clamp(max=noise.shape[1] - 1), :z_dim].to(torch.float32)
        return explicit if seeded is None else torch.where(inside.unsqueeze(2), explicit, seeded)


def default_loop(period: float, delta_z: int) -> tuple[float, float]:
    """(period, blend) of a seamless loop of `period` model frames: the blend is half the period, at most two
    token spacings (longer blends only average more of two unrelated motions)."""
    return float(period), min(float(period) / 2, 2.0 * delta_z)


class AlignedTimeEncoder(nn.Module):
    """Acyclic positional encoding v_t (paper section 3.1, eqs. 2-5) of a time t in the segment
    [t_l, t_r = t_l + delta_z] between the motion codes u_l and u_r.

    The wave parameters of eq. 3 are bias-free linear maps of the LEFT code u_l:
    - amplitude alpha_l (eqs. 1-3): fixed at 1, there is no W_alpha (the released checkpoints have none);
      each wave gives a sine and a cosine instead, so v_t has 2F dims;
    - frequency omega_l = (tanh(W_omega u_l) + 1) * sigma (eq. 5): W_omega is `periods_predictor`, sigma
      the buffer `freqs` = 2*pi / period for F periods spaced geometrically (2^linspace) from min_period
      to max_period, lowest frequency first (the paper says "linearly-spaced"; the released code and
      checkpoints space the periods geometrically);
    - phase rho_l = W_rho u_l (eq. 3, `phase_predictor`), scaled per wave by `phase_scales` =
      max_period / period.
    The raw code (eq. 2) is emb(t) = [sin, cos](omega_l * t + rho_l); eq. 4 subtracts its linear
    interpolation between emb(t_l) and emb(t_r) and adds the interpolated aligners W_a u_l, W_a u_r
    (`aligners_predictor`), so that v_t is continuous across anchors without being periodic."""

    def __init__(self, u_dim: int, cfg: MotionConfig):
        super().__init__()
        n = cfg.num_freqs
        periods = 2 ** np.linspace(np.log2(cfg.min_period), np.log2(cfg.max_period), n)
        freqs = torch.from_numpy((2 * np.pi / periods)[::-1].copy().astype(np.float32)).unsqueeze(0)
        self.register_buffer("freqs", freqs)  # [1, F] sigma of eq. 5, lowest frequency first
        self.register_buffer("phase_scales", cfg.max_period / (2 * np.pi / freqs))  # [1, F]
        self.periods_predictor = FullyConnectedLayer(u_dim, n, bias=False)
        self.phase_predictor = FullyConnectedLayer(u_dim, n, bias=False)
        self.aligners_predictor = FullyConnectedLayer(u_dim, 2 * n, bias=False)

    def wave_parameters(self, u_left: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frequency scales and phases `[M, F]` of the waves, from the left codes u_l `[M, u_dim]`.

        Eq. 5: omega_l = (tanh(W_omega u_l) + 1) * sigma, returned as the scale in (0, 2) that multiplies
        sigma (`freqs`); eq. 3: rho_l = W_rho u_l, scaled per wave by `phase_scales`. The amplitude alpha_l
        of eq. 3 is fixed at 1 (no W_alpha).
        """
        scale = self.periods_predictor(u_left).tanh() + 1
        phase = self.phase_predictor(u_left) * self.phase_scales
        return scale, phase

    def forward(self, t: torch.Tensor, u_left: torch.Tensor, u_right: torch.Tensor, delta_z: int,
                exact: bool = True) -> torch.Tensor:
        """t `[M]` (float32/float64, frames), u_left/u_right `[M, u_dim]` -> v `[M, 2F]` float32.

        exact=False repeats the reference's float32 order of operations (its far frames drift);
        exact=True evaluates the wave arguments in float64, reduced modulo 2*pi, before the sine.
        """
        scale, phase = self.wave_parameters(u_left)  # [M, F] each: omega_l / sigma and rho_l
        t_rem = torch.remainder(t, delta_z)
        t_left = t - t_rem
        t_right = t_left + delta_z
        alpha = (t_rem / delta_z).to(torch.float32).unsqueeze(1)  # [M, 1] eq. 4's lerp weight (not an amplitude)

        def emb(tt: torch.Tensor) -> torch.Tensor:  # eq. 2 with amplitude alpha_l = 1: [sin, cos](omega_l t + rho_l)
            if exact:
                arg = (self.freqs.double() * scale.double()) * tt.double().unsqueeze(1)
                arg = torch.remainder(arg, 2 * np.pi) + phase.double()
            else:
                arg = self.freqs * scale * tt.float().unsqueeze(1) + phase
            return torch.cat([arg.sin(), arg.cos()], dim=1).to(torch.float32)

        a_left, a_right = self.aligners_predictor(u_left), self.aligners_predictor(u_right)
        remove = emb(t_left) * (1 - alpha) + emb(t_right) * alpha  # eq. (4): the linear part between anchors
        add = a_left * (1 - alpha) + a_right * alpha  # eq. (4): aligners W_a u keep v_t distinct per segment
        return emb(t) - remove + add


class MotionMappingNetwork(nn.Module):
    """F_m (paper section 3.1): noise tokens -> motion codes u (two padding-less conv1d) -> v_t via the
    acyclic positional encoding (`AlignedTimeEncoder`)."""

    def __init__(self, cfg: MotionConfig, c_dim: int = 0):
        super().__init__()
        self.cfg, self.c_dim = cfg, c_dim
        k, lr = cfg.kernel_size, cfg.lr_multiplier
        self.conv = nn.Sequential(
            EqLRConv1d(cfg.z_dim + c_dim, cfg.z_dim, k, activation="lrelu", lr_multiplier=lr),
            EqLRConv1d(cfg.z_dim, cfg.z_dim, k, activation="lrelu", lr_multiplier=lr),
        )
        self.time_encoder = AlignedTimeEncoder(cfg.z_dim, cfg)

    def codes(self, motion: Motion, sample: torch.Tensor, first: torch.Tensor, count: int,
              c: torch.Tensor | None) -> torch.Tensor:
        """Motion codes u_first[m] .. u_first[m]+count-1 of video sample[m] -> `[M, count, z_dim]`."""
        length = count + self.cfg.tokens_per_code - 1
        tokens = motion.tokens(sample, first, length, self.cfg.z_dim)  # [M, length, z_dim]
        if self.c_dim > 0:
            tokens = torch.cat([tokens, c[sample].unsqueeze(1).expand(-1, length, -1).float()], dim=2)
        return self.conv(tokens.permute(0, 2, 1)).permute(0, 2, 1)

    def forward(self, t: torch.Tensor, motion: Motion, c: torch.Tensor | None = None,
                exact_time: bool = True) -> torch.Tensor:
        """t `[N, T]` (frames, >= 0) -> motion codes v `[N * T, v_dim]`.

        With `motion.loop` = (P, W), the codes repeat with period P: over the first W frames of each period
        they blend (smoothstep) from the codes just past P into the motion's own, so frame P equals frame 0
        and the motion's speed matches across the seam (`_looped_codes`).
        With `motion.origin` = (s0, t0), v_t + (v_t0[s0] - v_t0[own motion]) per video: a constant shift in
        code space, so the codes stay continuous in t and every video shows seed s0's frame at t0 (not in
        the paper: a control for animating one projected photo with several motions). Neither is in the
        paper; both are studio controls."""
        v = self._looped_codes(t, motion, c, exact_time)
        if motion.origin is None:
            return v
        seed0, t0 = motion.origin
        n, num_t = t.shape
        at_t0 = torch.full((n, 1), t0, dtype=t.dtype, device=t.device)
        own = self._looped_codes(at_t0, motion.replace(origin=None), c, exact_time)  # [N, v_dim]
        ref = self._codes_at(at_t0[:1], Motion.from_seeds([seed0]), None if c is None else c[:1], exact_time)
        return v + (ref - own).repeat_interleave(num_t, dim=0)

    def _looped_codes(self, t: torch.Tensor, motion: Motion, c: torch.Tensor | None,
                      exact_time: bool) -> torch.Tensor:
        """Codes of the (possibly looped) motion. A loop (P, W) reads the unlooped codes v at tau = t mod P;
        over the first W frames of each period it blends from v(tau + P), the codes just past the period's
        end, into v(tau) with a smoothstep weight. At tau = 0 the code is v(P), the code the previous
        period ended on, with the same derivative: the seam is C1, and frames W .. P are the motion's own."""
        if motion.loop is None:
            return self._codes_at(t, motion, c, exact_time)
        if (t < 0).any() or not torch.isfinite(t).all():
            raise MotionError("times must be finite and >= 0")
        period, blend = motion.loop
        tau = torch.remainder(t.double(), period)
        a = (tau / blend).clamp(0, 1)
        a = (a * a * (3 - 2 * a)).to(torch.float32).reshape(-1, 1)  # smoothstep: zero slope at both ends
        unlooped = motion.replace(loop=None)
        v_own = self._codes_at(tau.to(t.dtype), unlooped, c, exact_time)
        v_next = self._codes_at((tau + period).to(t.dtype), unlooped, c, exact_time)
        return v_next * (1 - a) + v_own * a

    def _codes_at(self, t: torch.Tensor, motion: Motion, c: torch.Tensor | None, exact_time: bool) -> torch.Tensor:
        n, num_t = t.shape
        dz = self.cfg.delta_z
        if (t < 0).any() or not torch.isfinite(t).all():
            raise MotionError("times must be finite and >= 0")
        i = torch.div(t, dz, rounding_mode="floor").long()  # [N, T] index of the left code
        lo = i.min(dim=1).values
        span = int((i.max(dim=1).values - lo).max()) + 2
        sample = torch.arange(n, device=t.device)
        if span <= MAX_SPAN_CODES:  # one token range per video covers all its frames
            u = self.codes(motion, sample, lo, span, c)  # [N, span, z_dim]
            rel = (i - lo.unsqueeze(1)).reshape(-1)
            rows = sample.repeat_interleave(num_t)
            u_left, u_right = u[rows, rel], u[rows, rel + 1]
        else:  # frames far apart: a 2-code window per frame
            u = self.codes(motion, sample.repeat_interleave(num_t), i.reshape(-1), 2, c)  # [N*T, 2, z_dim]
            u_left, u_right = u[:, 0], u[:, 1]
        return self.time_encoder(t.reshape(-1), u_left, u_right, dz, exact=exact_time)
