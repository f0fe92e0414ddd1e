import pytest

from core.config import ConfigError, ModelConfig, preset


@pytest.mark.parametrize("name", ["256", "small", "tiny"])
def test_presets_round_trip_through_json(name):
    cfg = preset(name)
    assert ModelConfig.from_json(cfg.to_json()) == cfg


def test_256_preset_matches_the_paper():
    cfg = preset("256")
    assert cfg.mapping.num_layers == 2 and cfg.mapping.z_dim == 512 and cfg.mapping.lr_multiplier == 0.01
    assert cfg.motion.delta_z == 16 and cfg.motion.kernel_size == 11 and cfg.motion.num_freqs == 256
    assert (cfg.motion.min_period, cfg.motion.max_period) == (16, 1024)
    s = cfg.synthesis
    assert [s.channels(r) for r in s.block_resolutions] == [512, 512, 512, 512, 256, 128, 64]
    assert s.num_fp16_res == 4 and s.conv_clamp == 256
    assert cfg.discriminator.concat_res == 16 and cfg.discriminator.num_frames == 3


def test_unknown_keys_and_bad_values_are_rejected():
    d = preset("tiny").to_dict()
    d["synthesis"]["bogus"] = 1
    with pytest.raises(ConfigError, match="synthesis.bogus"):
        ModelConfig.from_dict(d)
    with pytest.raises(ConfigError, match="power of two"):
        preset("tiny").replace(synthesis={"img_resolution": 48})
    with pytest.raises(ConfigError, match="odd"):
        preset("tiny").replace(motion={"kernel_size": 4})
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("1024")


def test_configs_are_frozen():
    cfg = preset("tiny")
    with pytest.raises(AttributeError):
        cfg.mapping.z_dim = 3
