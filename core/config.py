"""Model configuration: frozen dataclasses, validated on construction, saved in every checkpoint.

Presets: "256" is the paper's 256x256 model (the released checkpoints' shapes: docs/reference.md,
'Generator' and 'Discriminator'), "small" a 64x64 model for CPU demos and the bundled default, "tiny" a
16x16 model for tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _is_pow2(x: int) -> bool:
    return x >= 4 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class MappingConfig:
    """Content mapping F_c: z -> w (shared by every frame of a video)."""

    z_dim: int = 512
    c_dim: int = 0  # class-label dimensionality, 0 = unconditional
    w_dim: int = 512
    num_layers: int = 2
    lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995

    def __post_init__(self):
        _check(self.z_dim > 0 and self.w_dim > 0 and self.c_dim >= 0, "mapping dims must be positive")
        _check(self.num_layers >= 1, "mapping.num_layers must be >= 1")
        _check(0 < self.lr_multiplier <= 1, "mapping.lr_multiplier must be in (0, 1]")
        _check(0 <= self.w_avg_beta < 1, "mapping.w_avg_beta must be in [0, 1)")


@dataclass(frozen=True)
class MotionConfig:
    """Motion mapping F_m and the acyclic positional encoding (paper section 3.1, eqs. 2-5)."""

    z_dim: int = 512  # motion noise token size
    delta_z: int = 16  # frames between two noise tokens ("motion_z_distance")
    kernel_size: int = 11  # of both padding-less conv1d layers
    num_freqs: int = 256  # v_dim = 2 * num_freqs (sin and cos)
    min_period: float = 16.0
    max_period: float = 1024.0
    lr_multiplier: float = 0.01

    def __post_init__(self):
        _check(self.z_dim > 0 and self.num_freqs > 0, "motion dims must be positive")
        _check(self.delta_z >= 1, "motion.delta_z must be >= 1")
        _check(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "motion.kernel_size must be odd")
        _check(0 < self.min_period <= self.max_period, "motion periods need 0 < min_period <= max_period")

    @property
    def v_dim(self) -> int:
        return 2 * self.num_freqs

    @property
    def tokens_per_code(self) -> int:
        """Noise tokens one motion code depends on (each conv eats kernel_size - 1)."""
        return 2 * (self.kernel_size - 1) + 1


@dataclass(frozen=True)
class SynthesisConfig:
    """StyleGAN2 "skip" synthesis with the motion code concatenated to the 4x4 constant."""

    img_resolution: int = 256
    img_channels: int = 3
    channel_base: int = 16384
    channel_max: int = 512
    num_fp16_res: int = 4  # fp16 at the N highest resolutions (GPU only)
    conv_clamp: float | None = 256.0

    def __post_init__(self):
        _check(_is_pow2(self.img_resolution), "synthesis.img_resolution must be a power of two >= 4")
        _check(self.img_channels in (1, 3), "synthesis.img_channels must be 1 or 3")
        _check(self.channel_base > 0 and self.channel_max > 0, "synthesis channels must be positive")
        _check(self.num_fp16_res >= 0, "synthesis.num_fp16_res must be >= 0")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Holistic D: per-frame trunk, channel-wise concat at `concat_res`, time-gap conditioning."""

    channel_base: int = 16384
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    num_frames: int = 3  # k frames per clip
    concat_res: int = 16
    num_frames_div_factor: int = 2
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    max_num_frames: int = 1024  # size of the gap embedding table
    time_embed_dim: int = 256
    mapping_layers: int = 2

    def __post_init__(self):
        _check(self.num_frames >= 1, "discriminator.num_frames must be >= 1")
        _check(_is_pow2(self.concat_res), "discriminator.concat_res must be a power of two >= 4")
        _check(self.num_frames_div_factor >= 1, "discriminator.num_frames_div_factor must be >= 1")
        _check(self.max_num_frames >= 2, "discriminator.max_num_frames must be >= 2")

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "custom"
    mapping: MappingConfig = field(default_factory=MappingConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self):
        res = self.synthesis.img_resolution
        _check(self.discriminator.concat_res < res, "discriminator.concat_res must be below img_resolution")
        _check(self.discriminator.concat_res >= 8, "discriminator.concat_res must be >= 8")

    @property
    def img_resolution(self) -> int:
        return self.synthesis.img_resolution

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, d, "")

    @classmethod
    def from_json(cls, s: str) -> ModelConfig:
        return cls.from_dict(json.loads(s))

    def replace(self, **sections) -> ModelConfig:
        """Copy with some fields replaced; nested sections take dicts of their own fields."""
        d = self.to_dict()
        for key, value in sections.items():
            _check(key in d, f"unknown config key {key!r}")
            if isinstance(d[key], dict):
                _check(isinstance(value, dict), f"section {key!r} must be given as a dict")
                d[key] = {**d[key], **value}
            else:
                d[key] = value
        return ModelConfig.from_dict(d)


def _from_dict(cls, d: dict[str, Any], prefix: str):
    _check(isinstance(d, dict), f"config section {prefix or 'model'!r} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    _check(not unknown, f"unknown config keys: {', '.join(prefix + k for k in unknown)}")
    kwargs = {}
    for name, value in d.items():
        sub = _SECTIONS.get(name) if cls is ModelConfig else None
        kwargs[name] = _from_dict(sub, value, f"{name}.") if sub is not None else value
    return cls(**kwargs)


_SECTIONS = {
    "mapping": MappingConfig,
    "motion": MotionConfig,
    "synthesis": SynthesisConfig,
    "discriminator": DiscriminatorConfig,
}


def _preset_256() -> ModelConfig:
    return ModelConfig(name="256")


def _preset_small() -> ModelConfig:
    # fmaps 0.125 at 64x64 as in the reference's low-resolution variants: {4..8: 512, 16: 256, 32: 128, 64: 64};
    # narrower latents keep it fast enough for CPU demos.
    return ModelConfig(
        name="small",
        mapping=MappingConfig(z_dim=256, w_dim=256),
        motion=MotionConfig(z_dim=256, num_freqs=128),
        synthesis=SynthesisConfig(img_resolution=64, channel_base=4096, channel_max=256, num_fp16_res=2),
        discriminator=DiscriminatorConfig(channel_base=4096, channel_max=256, num_fp16_res=2),
    )


def _preset_tiny() -> ModelConfig:
    return ModelConfig(
        name="tiny",
        mapping=MappingConfig(z_dim=32, w_dim=32),
        motion=MotionConfig(z_dim=16, num_freqs=8, kernel_size=3, delta_z=4, min_period=4, max_period=64),
        synthesis=SynthesisConfig(img_resolution=16, channel_base=128, channel_max=32, num_fp16_res=0),
        discriminator=DiscriminatorConfig(channel_base=128, channel_max=32, num_fp16_res=0, concat_res=8,
                                          mbstd_group_size=2, max_num_frames=64, time_embed_dim=16),
    )


PRESETS = {"256": _preset_256, "small": _preset_small, "tiny": _preset_tiny}


def preset(name: str) -> ModelConfig:
    """A named preset: "256" (the paper's), "small" (64x64 CPU demos), "tiny" (tests)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]()
