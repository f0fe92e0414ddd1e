from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, load_generator, save_checkpoint
from core.generate import main as generate_main
from core.render import FrameWriter, RenderError, Timeline, render_video, tile


def test_save_load_round_trip_gives_identical_frames(tiny_G, tmp_path):
    path = save_checkpoint(tmp_path / "g.safetensors", {"G_ema": tiny_G}, tiny_G.cfg, metadata={"fps": 30})
    G2 = load_generator(path)
    assert G2.cfg == tiny_G.cfg
    assert torch.equal(tiny_G.render(3, [0, 7.5, 1000]), G2.render(3, [0, 7.5, 1000]))
    assert load_checkpoint(path).metadata == {"fps": 30}
    assert not list(tmp_path.glob(".*tmp")), "no temporary files left behind"


def test_fp16_export_is_half_size_and_close(tiny_G, tmp_path):
    full = save_checkpoint(tmp_path / "a.safetensors", {"G_ema": tiny_G}, tiny_G.cfg)
    half = save_checkpoint(tmp_path / "b.safetensors", {"G_ema": tiny_G}, tiny_G.cfg, fp16=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    a, b = load_generator(full).render(1, [0, 5]), load_generator(half).render(1, [0, 5])
    assert (a - b).abs().max() < 0.05


def test_bad_checkpoints_give_clear_errors(tiny_G, tmp_path):
    good = save_checkpoint(tmp_path / "g.safetensors", {"G_ema": tiny_G}, tiny_G.cfg)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    text = tmp_path / "x.safetensors"
    text.write_text("hello, I am not a checkpoint")
    with pytest.raises(CheckpointError, match="not"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    only_d = save_checkpoint(tmp_path / "d.safetensors", {"D": torch.nn.Linear(2, 2)}, tiny_G.cfg)
    with pytest.raises(CheckpointError, match="no G_ema"):
        load_generator(only_d)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a StyleGAN-V Studio checkpoint"):
        load_checkpoint(foreign)


def test_failed_write_keeps_the_old_file(tiny_G, tmp_path):
    path = save_checkpoint(tmp_path / "g.safetensors", {"G_ema": tiny_G}, tiny_G.cfg)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, {"G_ema": tiny_G}, tiny_G.cfg, metadata={"bad": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]


def test_timeline_maps_output_frames_to_model_time():
    tl = Timeline(t_offset=100, duration=2, fps=50, slowmo=2, native_fps=25)
    assert tl.num_frames == 100
    np.testing.assert_allclose(tl.times(0, 3), [100, 100.25, 100.5])
    with pytest.raises(RenderError):
        Timeline(fps=0)


def test_tile_places_rows_and_columns():
    frames = np.stack([np.full((2, 2, 3), i, np.uint8) for i in range(6)])
    grid = tile(frames, 2, 3)
    assert grid.shape == (4, 6, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 2, 0] == 1 and grid[2, 0, 0] == 3 and grid[3, 5, 0] == 5


@pytest.mark.parametrize("suffix", ["mp4", "gif", "zip"])
def test_render_video_formats(tiny_G, tmp_path, suffix):
    tl = Timeline(duration=0.4, fps=10)
    out = render_video(tiny_G, tmp_path / f"v.{suffix}", tl, content_seeds=[0, 1], motion_seeds=[2, 3])
    if suffix == "zip":
        import zipfile

        names = zipfile.ZipFile(out).namelist()
        assert names == [f"{i:06d}.png" for i in range(4)]
    else:
        frames = list(imageio.mimread(out)) if suffix == "gif" else [f for f in imageio.get_reader(out)]
        assert len(frames) == 4
        assert frames[0].shape[:2] == (16, 32)


def test_render_matches_direct_synthesis_and_grid_layout(tiny_G, tmp_path):
    tl = Timeline(t_offset=5000.5, duration=0.2, fps=10)
    out = render_video(tiny_G, tmp_path / "g.zip", tl, content_seeds=[0, 1], motion_seeds=[7, 8], grid=True)
    import zipfile

    first = imageio.imread(zipfile.ZipFile(out).read("000000.png"))
    assert first.shape == (32, 32, 3)  # 2 motion rows x 2 content columns
    direct = tiny_G.render(1, [5000.5], motion_seed=8)[0]  # row 1 (motion 8), column 1 (content 1)
    expected = ((direct.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(first[16:, 16:].astype(int) - expected.astype(int)).max() <= 1


def test_aborted_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with FrameWriter(tmp_path / "x.mp4", fps=10) as w:
            w.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_generate_cli(tiny_G, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "g.safetensors", {"G_ema": tiny_G}, tiny_G.cfg)
    latent = tmp_path / "l.npz"
    np.savez(latent, ws=tiny_G.mapping(torch.randn(1, tiny_G.z_dim)).detach().numpy())
    assert generate_main(["--checkpoint", str(ckpt), "--latent", str(latent), "--motion-seeds", "1",
                          "--duration", "0.3", "--fps", "10", "--out", str(tmp_path / "a.gif")]) == 0
    assert Path(tmp_path / "a.gif").exists()
    assert generate_main(["--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "b.mp4")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "b.mp4").exists()


def test_generate_cli_applies_a_latents_style_offsets_and_motion_seed(tiny_G, tmp_path):
    from core.styles import style_layers, style_offsets

    ckpt = save_checkpoint(tmp_path / "g.safetensors", {"G_ema": tiny_G}, tiny_G.cfg)
    ws = tiny_G.mapping(torch.randn(1, tiny_G.z_dim, generator=torch.Generator().manual_seed(3))).detach()
    name, affine = style_layers(tiny_G)[0]
    offset = torch.full([affine.weight.shape[0]], 2.0)
    latent = tmp_path / "edited.npz"
    np.savez(latent, ws=ws.numpy(), motion_seed=np.int64(5), **{f"style/{name}": offset.numpy()})

    def render(args, out):
        assert generate_main(["--checkpoint", str(ckpt), "--latent", str(latent), "--duration", "0.1",
                              "--fps", "10", "--out", str(out), *args]) == 0
        import zipfile

        return imageio.imread(zipfile.ZipFile(out).read("000000.png")).astype(int)

    def expected(seed, offsets):
        with torch.no_grad(), style_offsets(tiny_G, offsets):
            frame = tiny_G.synthesis(ws, torch.zeros(1, 1, dtype=torch.float64), [seed])[0, 0]
        return ((frame.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy().astype(int)

    got = render([], tmp_path / "a.zip")
    assert np.abs(got - expected(5, {name: offset})).max() <= 1  # the edit and the latent's motion seed
    assert np.abs(got - expected(5, None)).max() > 8  # ... and the edit is visible
    both = render(["--motion-seeds", "1,2"], tmp_path / "b.zip")  # one photo, two motions side by side ...
    assert both.shape == (16, 32, 3)  # ... both passing through the latent's own frame at its t
    assert np.abs(both[:, :16] - expected(5, {name: offset})).max() <= 1
    assert np.abs(both[:, 16:] - expected(5, {name: offset})).max() <= 1
    free = render(["--motion-seeds", "1,2", "--free-motion"], tmp_path / "f.zip")  # each from its own pose
    assert np.abs(free[:, 16:] - expected(2, {name: offset})).max() <= 1
    assert np.abs(free[:, 16:] - expected(5, {name: offset})).max() > 8
    latent.write_bytes(latent.read_bytes()[:100])  # a truncated file: a clear error, no output
    assert generate_main(["--checkpoint", str(ckpt), "--latent", str(latent), "--out", str(tmp_path / "c.zip")]) == 2
    np.savez(latent, ws=ws.numpy(), **{"style/no_such_layer": offset.numpy()})
    assert generate_main(["--checkpoint", str(ckpt), "--latent", str(latent), "--out", str(tmp_path / "c.zip")]) == 2
    assert not (tmp_path / "c.zip").exists()
