"""Importing the paper's released pickles without executing them (core.official, core.convert).

The pickles are written here from scratch in the released byte structure: persistent modules reduce to
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = dict(type, version, module_src,
class_name, state); init kwargs are `dnnlib.util.EasyDict`s; `cfg` is an OmegaConf `DictConfig` tree (with
parent links and `${...}` interpolations); D's time encoder is a plain `training.layers` module holding a
torch Embedding; tensors pickle the way torch pickles them. The classes named in the file live in fake
modules registered in sys.modules only while a pickle is being written. The embedded source would create
a marker file if it ever ran.
"""

from __future__ import annotations

import collections
import copy
import os
import pickle
import sys
import types
import typing
from pathlib import Path

import pytest
import torch
from torch import nn

from core.checkpoint import CheckpointError, load_checkpoint, load_generator
from core.config import preset
from core.convert import main as convert_main
from core.discriminator import Discriminator
from core.generator import Generator
from core.official import OfficialImportError, import_official

TIMES = [0.0, 1.5, 7.0, 123.25]


# ------------------------------------------------------------------------------------------ released-format writer

class _Fakes:
    """Fake modules and classes carrying the names the released pickles refer to."""

    def __init__(self, monkeypatch):
        def module(name):
            m = types.ModuleType(name)
            monkeypatch.setitem(sys.modules, name, m)
            return m

        def cls(mod, name, base=object):
            c = type(name, (base,), {"__module__": mod.__name__, "__qualname__": name})
            setattr(mod, name, c)
            return c

        for pkg in ("torch_utils", "dnnlib", "training", "omegaconf"):
            module(pkg)
        persistence = module("torch_utils.persistence")

        def _reconstruct_persistent_obj(meta):
            raise AssertionError("the importer must never call the pickled reconstruct hook")

        _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
        _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
        persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
        self.reconstruct = _reconstruct_persistent_obj
        self.EasyDict = cls(module("dnnlib.util"), "EasyDict", dict)
        self.TDE = cls(module("training.layers"), "TemporalDifferenceEncoder")
        self.DictConfig = cls(module("omegaconf.dictconfig"), "DictConfig")
        self.ListConfig = cls(module("omegaconf.listconfig"), "ListConfig")
        base = module("omegaconf.base")
        self.Metadata, self.ContainerMetadata = cls(base, "Metadata"), cls(base, "ContainerMetadata")
        self.AnyNode = cls(module("omegaconf.nodes"), "AnyNode")


class _Persistent:
    """Pickles as the reference's persistent classes do: a call of the reconstruct hook with `meta`."""

    def __init__(self, fakes: _Fakes, meta: dict):
        self.fakes, self.meta = fakes, meta

    def __reduce__(self):
        return self.fakes.reconstruct, (self.meta,)


def _meta_obj(cls, **fields):
    obj = cls.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def omegaconf_tree(fakes: _Fakes, value, parent=None, key=None):
    """A DictConfig/ListConfig record tree as OmegaConf 2.1+ pickles it (nodes point at their parents)."""
    def meta(cls, **extra):
        return _meta_obj(cls, ref_type=typing.Any, object_type=extra.pop("object_type", None), optional=True,
                         key=key, flags={}, flags_root=False, resolver_cache=collections.defaultdict(dict), **extra)

    if isinstance(value, (dict, list)):
        is_dict = isinstance(value, dict)
        node = _meta_obj(fakes.DictConfig if is_dict else fakes.ListConfig)
        node.__dict__.update(_metadata=meta(fakes.ContainerMetadata, object_type=dict if is_dict else list,
                                            key_type=typing.Any, element_type=typing.Any), _parent=parent)
        items = value.items() if is_dict else enumerate(value)
        children = [(k, omegaconf_tree(fakes, v, node, k)) for k, v in items]
        node._content = dict(children) if is_dict else [c for _, c in children]
        return node
    return _meta_obj(fakes.AnyNode, _metadata=meta(fakes.Metadata), _parent=parent, _val=value)


def run_config(cfg, *, use_noise=False, gen_strategy="conv"):
    """The run config tree of the reference (hydra-composed, interpolations unresolved)."""
    m, mo, d = cfg.mapping, cfg.motion, cfg.discriminator
    return {
        "dataset": {"name": "ffs_${dataset.resolution}", "c_dim": m.c_dim, "max_num_frames": d.max_num_frames,
                    "resolution": cfg.img_resolution, "sampling": "${sampling}"},
        "sampling": {"name": "${sampling.type}${sampling.num_frames_per_video}", "type": "random",
                     "max_num_frames": "${dataset.max_num_frames}", "num_frames_per_video": d.num_frames,
                     "total_dists": [1, 2, 4, 8]},
        "model": {
            "generator": {"source": "networks", "use_noise": use_noise, "w_dim": m.w_dim, "z_dim": m.z_dim,
                          "c_dim": "${dataset.c_dim}", "input": {"type": "temporal"}, "sampling": "${sampling}",
                          "motion": {"z_dim": mo.z_dim, "v_dim": mo.z_dim, "gen_strategy": gen_strategy,
                                     "motion_z_distance": "${model.generator.time_enc.min_period_len}",
                                     "kernel_size": mo.kernel_size, "fourier": True, "use_fractional_t": True},
                          "time_enc": {"cond_type": "concat_const", "dim": mo.num_freqs,
                                       "min_period_len": mo.delta_z, "max_period_len": mo.max_period}},
            "discriminator": {"source": "networks", "sampling": "${sampling}", "concat_res": d.concat_res,
                              "num_frames_div_factor": d.num_frames_div_factor, "dummy_c": False,
                              "mbstd_group_size": d.mbstd_group_size},
        },
    }


EMBEDDED_SOURCE = "import pathlib\npathlib.Path({marker!r}).write_text('embedded code ran')\n"


class ReleasedWriter:
    """Turns our modules into the released object graph and pickles it with `pickle.dump`."""

    def __init__(self, fakes: _Fakes, marker: Path):
        self.fakes, self.src = fakes, EMBEDDED_SOURCE.format(marker=str(marker))

    def _state(self, m: nn.Module, extra: dict) -> dict:
        params = collections.OrderedDict(
            (k, None if v is None else nn.Parameter(v.detach().clone(), requires_grad=False))
            for k, v in m._parameters.items())
        return {"training": False, "_parameters": params, "_buffers": collections.OrderedDict(m._buffers),
                "_non_persistent_buffers_set": set(), "_forward_hooks": collections.OrderedDict(),
                "_modules": collections.OrderedDict((k, self.mirror(c)) for k, c in m._modules.items()), **extra}

    def persistent(self, m: nn.Module, **extra) -> _Persistent:
        extra.setdefault("_init_args", ())
        extra.setdefault("_init_kwargs", self.fakes.EasyDict())
        meta = dict(type="class", version=6, module_src=self.src, class_name=type(m).__name__,
                    state=self._state(m, extra))
        return _Persistent(self.fakes, meta)

    def mirror(self, m: nn.Module):
        if isinstance(m, (nn.Sequential, nn.Embedding)):  # plain torch modules, pickled by torch itself
            twin = type(m).__new__(type(m))
            twin.__dict__.update(m.__dict__)
            twin.__dict__.update(self._state(m, {}))
            return twin
        if type(m).__name__ == "TemporalDifferenceEncoder":  # a plain (non-persistent) class of training.layers
            return _meta_obj(self.fakes.TDE, **self._state(m, {"d": m.const_embed.embedding_dim}))
        return self.persistent(m)

    def snapshot(self, cfg, G=None, D=None, G_ema=None, *, tree=None, g_kwargs=None) -> dict:
        root = omegaconf_tree(self.fakes, tree or run_config(cfg))
        gen_cfg = root._content["model"]._content["generator"]
        disc_cfg = root._content["model"]._content["discriminator"]
        E, s, d = self.fakes.EasyDict, cfg.synthesis, cfg.discriminator
        g_kw = E(w_dim=cfg.mapping.w_dim, c_dim=cfg.mapping.c_dim, img_resolution=s.img_resolution, img_channels=3,
                 mapping_kwargs=E(num_layers=cfg.mapping.num_layers, cfg=gen_cfg),
                 synthesis_kwargs=E(channel_base=s.channel_base, channel_max=s.channel_max,
                                    num_fp16_res=s.num_fp16_res, conv_clamp=s.conv_clamp), cfg=gen_cfg)
        g_kw.update(g_kwargs or {})
        d_kw = E(c_dim=cfg.mapping.c_dim, img_resolution=s.img_resolution, img_channels=3,
                 channel_base=d.channel_base, channel_max=d.channel_max, num_fp16_res=d.num_fp16_res,
                 conv_clamp=d.conv_clamp, block_kwargs=E(), mapping_kwargs=E(num_layers=d.mapping_layers),
                 epilogue_kwargs=E(mbstd_group_size=d.mbstd_group_size), cfg=disc_cfg)
        data = {"training_set_kwargs": {"path": "data/ffs.zip", "resolution": s.img_resolution, "xflip": False}}
        for name, net, kw, c in (("G", G, g_kw, gen_cfg), ("D", D, d_kw, disc_cfg), ("G_ema", G_ema, g_kw, gen_cfg)):
            if net is not None:
                data[name] = self.persistent(net, _init_kwargs=copy.copy(kw), cfg=c)
        data.update(augment_pipe=None, G_opt=None, D_opt=None, vis={"z": torch.randn(2, 3)},
                    stats={"cur_nimg": 1000, "cur_tick": 1, "batch_idx": 5})
        return data

    def write(self, path: Path, data) -> Path:
        with open(path, "wb") as f:
            pickle.dump(data, f)
        return path


@pytest.fixture()
def writer(monkeypatch, tmp_path):
    return ReleasedWriter(_Fakes(monkeypatch), tmp_path / "EMBEDDED_CODE_RAN")


class AugmentPipe(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("p", torch.tensor(0.25))


def random_nets(cfg, seed=0):
    torch.manual_seed(seed)
    G, D = Generator(cfg).eval(), Discriminator(cfg).eval()
    with torch.no_grad():  # non-trivial biases and w_avg so that a wrong mapping shows in the frames
        for net in (G, D):
            for name, p in net.named_parameters():
                if name.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
        G.mapping.w_avg.normal_()
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G_ema.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return G, D, G_ema


def render(G, cfg, n=2, seed=1, times=TIMES):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, cfg.mapping.z_dim, generator=g)
    c = torch.eye(cfg.mapping.c_dim)[:n] if cfg.mapping.c_dim else None
    with torch.no_grad():
        return G(z, torch.tensor([times] * n, dtype=torch.float64), [11, 12][:n], c=c)


def d_logits(D, cfg, seed=2):
    g = torch.Generator().manual_seed(seed)
    k, r = cfg.discriminator.num_frames, cfg.img_resolution
    img = torch.rand(2, k, 3, r, r, generator=g) * 2 - 1
    t = torch.tensor([[0.0, 1.0, 3.0], [2.0, 5.0, 9.0]])[:, :k]
    c = torch.eye(cfg.mapping.c_dim)[:2] if cfg.mapping.c_dim else None
    with torch.no_grad():
        return D(img, t, c=c)


def load_imported(ckpt, name):
    net = Discriminator(ckpt.cfg) if name == "D" else Generator(ckpt.cfg)
    net.load_state_dict(ckpt.module_state(name))
    return net.eval()


# ------------------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("c_dim", [0, 3])
def test_released_format_renders_what_our_model_renders(writer, tmp_path, c_dim):
    cfg = preset("tiny").replace(mapping={"c_dim": c_dim})
    G, D, G_ema = random_nets(cfg)
    data = writer.snapshot(cfg, G, D, G_ema)
    data["augment_pipe"] = writer.persistent(AugmentPipe())
    path = writer.write(tmp_path / "network-snapshot-000100.pkl", data)

    ckpt = import_official(path)
    assert ckpt.cfg.replace(name=cfg.name) == cfg  # derived from init kwargs + cfg (interpolations resolved)
    assert ckpt.modules == ["D", "G", "G_ema"]
    for name, net in (("G_ema", G_ema), ("G", G), ("D", D)):
        state = ckpt.module_state(name)
        assert state.keys() == net.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert torch.equal(render(load_imported(ckpt, "G_ema"), cfg), render(G_ema, cfg))
    assert torch.equal(render(load_imported(ckpt, "G"), cfg), render(G, cfg))
    assert torch.equal(d_logits(load_imported(ckpt, "D"), cfg), d_logits(D, cfg))
    assert not torch.equal(render(G, cfg), render(G_ema, cfg))  # the two generators really differ
    assert ckpt.metadata["reference_max_num_frames"] == cfg.discriminator.max_num_frames
    assert ckpt.metadata["stats"]["cur_nimg"] == 1000
    assert ckpt.metadata["augment_p"] == pytest.approx(0.25)
    assert not (tmp_path / "EMBEDDED_CODE_RAN").exists()


def test_load_generator_accepts_pkl_paths(writer, tmp_path):
    cfg = preset("tiny")
    G, D, G_ema = random_nets(cfg, seed=3)
    path = writer.write(tmp_path / "snap.pkl", writer.snapshot(cfg, G, D, G_ema))
    G_loaded = load_generator(path)
    assert not G_loaded.training
    assert torch.equal(render(G_loaded, cfg, times=[0.0, 40.5]), render(G_ema, cfg, times=[0.0, 40.5]))
    assert not (tmp_path / "EMBEDDED_CODE_RAN").exists()


def test_torch_save_zip_format_is_read_too(writer, tmp_path):
    cfg = preset("tiny")
    G, D, G_ema = random_nets(cfg, seed=4)
    path = tmp_path / "zipped.pkl"
    torch.save(writer.snapshot(cfg, G_ema=G_ema), path)  # storages as persistent ids in a zip archive
    ckpt = import_official(path)
    assert ckpt.modules == ["G_ema"]
    assert torch.equal(render(load_imported(ckpt, "G_ema"), cfg), render(G_ema, cfg))


def test_convert_cli(writer, tmp_path, capsys):
    cfg = preset("tiny")
    G, D, G_ema = random_nets(cfg, seed=5)
    src = writer.write(tmp_path / "snap.pkl", writer.snapshot(cfg, G, D, G_ema))
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    assert convert_main([str(src), str(full)]) == 0
    assert convert_main([str(src), str(half), "--fp16", "--g-ema-only"]) == 0
    assert "G_ema" in capsys.readouterr().out
    ck_full, ck_half = load_checkpoint(full), load_checkpoint(half)
    assert ck_full.modules == ["D", "G", "G_ema"] and ck_half.modules == ["G_ema"]
    assert ck_full.cfg == import_official(src).cfg
    assert torch.equal(render(load_generator(full), cfg), render(G_ema, cfg))
    assert (render(load_generator(half), cfg) - render(G_ema, cfg)).abs().max() < 0.05
    assert half.stat().st_size < full.stat().st_size / 2
    assert convert_main([str(tmp_path / "missing.pkl"), str(tmp_path / "x.safetensors")]) == 2
    assert not (tmp_path / "x.safetensors").exists()


# ------------------------------------------------------------------------------------------ refusals

class _Shell:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


class _WriteFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return Path.write_text, (Path(self.path), "pwned")


@pytest.mark.parametrize("where", ["top", "in_module_state", "in_config"])
def test_malicious_reduce_is_refused_and_nothing_runs(writer, tmp_path, where):
    marker = tmp_path / "SHELL_RAN"
    cfg = preset("tiny")
    G, D, G_ema = random_nets(cfg, seed=6)
    data = writer.snapshot(cfg, G_ema=G_ema)
    payload = _Shell(f"touch {marker}")
    if where == "top":
        data["vis"] = payload
    elif where == "in_module_state":
        data["G_ema"].meta["state"]["hook"] = payload
    else:
        data["G_ema"].meta["state"]["_init_kwargs"]["mapping_kwargs"]["cfg"] = payload
    path = writer.write(tmp_path / "evil.pkl", data)
    with pytest.raises(OfficialImportError, match=r"refusing to load (posix|nt)\.system"):
        import_official(path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_generator(path)
    assert not marker.exists()
    assert not (tmp_path / "EMBEDDED_CODE_RAN").exists()


def test_file_writing_reduce_is_refused(tmp_path):
    marker = tmp_path / "WRITTEN"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _WriteFile(marker)}))
    with pytest.raises(OfficialImportError, match=r"refusing to load pathlib\.\w*Path\.write_text"):
        import_official(path)
    assert not marker.exists()


def test_malicious_storage_payload_is_refused(tmp_path):
    marker = tmp_path / "SHELL_RAN"
    inner = pickle.dumps(_Shell(f"touch {marker}"), protocol=2)

    class _Storage:
        def __reduce__(self):
            return torch.storage._load_from_bytes, (inner,)

    path = tmp_path / "evil_storage.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Storage()}))
    with pytest.raises(OfficialImportError, match="refusing storage payload"):
        import_official(path)
    assert not marker.exists()


@pytest.mark.parametrize("global_", [("builtins", "eval"), ("subprocess", "Popen"), ("torch", "load")])
def test_other_globals_are_refused_by_name(tmp_path, global_):
    mod, name = global_
    blob = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00" + b"c" + f"{mod}\n{name}\n".encode() + b"."
    path = tmp_path / "g.pkl"
    path.write_bytes(blob)
    with pytest.raises(OfficialImportError, match=f"refusing to load {mod}.{name}"):
        import_official(path)


def test_build_on_allowed_functions_is_refused(tmp_path):
    from core import official_pickle

    defaults = official_pickle._rebuild_tensor.__defaults__
    # GLOBAL torch._utils._rebuild_tensor_v2; BUILD (None, {"__defaults__": (1,)}): would patch our function
    blob = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b.")
    path = tmp_path / "patch.pkl"
    path.write_bytes(blob)
    with pytest.raises(OfficialImportError, match="refusing to modify torch._utils._rebuild_tensor_v2"):
        import_official(path)
    assert official_pickle._rebuild_tensor.__defaults__ == defaults


def test_truncated_and_non_pickle_files_give_clear_errors(writer, tmp_path):
    cfg = preset("tiny")
    G, D, G_ema = random_nets(cfg, seed=7)
    good = writer.write(tmp_path / "good.pkl", writer.snapshot(cfg, G_ema=G_ema)).read_bytes()
    for frac in (0.5, 0.99):
        cut = tmp_path / f"cut{frac}.pkl"
        cut.write_bytes(good[: int(len(good) * frac)])
        with pytest.raises(OfficialImportError, match="truncated"):
            import_official(cut)
    text = tmp_path / "notes.pkl"
    text.write_text("hello, I am not a checkpoint\n")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    for bad in (text, empty):
        with pytest.raises(OfficialImportError, match="not a pickle"):
            import_official(bad)
    fake_zip = tmp_path / "fake_zip.pkl"
    with __import__("zipfile").ZipFile(fake_zip, "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(OfficialImportError, match="data.pkl"):
        import_official(fake_zip)
    with pytest.raises(OfficialImportError, match="not found"):
        import_official(tmp_path / "nope.pkl")
    assert isinstance(OfficialImportError("x"), CheckpointError)


# ------------------------------------------------------------------------------------------ config / mapping errors

def test_unsupported_variants_are_named(writer, tmp_path):
    cfg = preset("tiny")
    G, D, G_ema = random_nets(cfg, seed=8)
    variants = (({"use_noise": True}, "use_noise"), ({"gen_strategy": "autoregressive"}, "autoregressive"))
    for kwargs, expected in variants:
        tree = run_config(cfg, **kwargs)
        path = writer.write(tmp_path / "variant.pkl", writer.snapshot(cfg, G_ema=G_ema, tree=tree))
        with pytest.raises(OfficialImportError, match=f"unsupported checkpoint variant.*{expected}"):
            import_official(path)
    path = writer.write(tmp_path / "arch.pkl", writer.snapshot(
        cfg, G_ema=G_ema, g_kwargs={"synthesis_kwargs": writer.fakes.EasyDict(architecture="resnet")}))
    with pytest.raises(OfficialImportError, match="resnet"):
        import_official(path)


def test_unmapped_and_missing_tensors_are_listed(writer, tmp_path):
    cfg = preset("tiny")
    G, D, G_ema = random_nets(cfg, seed=9)
    data = writer.snapshot(cfg, G_ema=G_ema)
    state = data["G_ema"].meta["state"]
    state["_buffers"]["stray_buffer"] = torch.zeros(3)
    mapping_state = state["_modules"]["mapping"].meta["state"]
    del mapping_state["_modules"]["fc1"]
    path = writer.write(tmp_path / "odd.pkl", data)
    with pytest.raises(OfficialImportError) as err:
        import_official(path)
    msg = str(err.value)
    assert "mapping.fc1.weight" in msg and "mapping.fc1.bias" in msg and "stray_buffer" in msg

    data = writer.snapshot(cfg, G_ema=G_ema)  # right names, wrong shape
    data["G_ema"].meta["state"]["_modules"]["mapping"].meta["state"]["_buffers"]["w_avg"] = torch.zeros(5)
    with pytest.raises(OfficialImportError, match=r"mapping\.w_avg \(5,\) vs ours \(32,\)"):
        import_official(writer.write(tmp_path / "shape.pkl", data))


def test_missing_requested_network_is_reported(writer, tmp_path):
    cfg = preset("tiny")
    _, _, G_ema = random_nets(cfg, seed=10)
    path = writer.write(tmp_path / "gema.pkl", writer.snapshot(cfg, G_ema=G_ema))
    with pytest.raises(OfficialImportError, match="holds no D"):
        import_official(path, modules=("G_ema", "D"))


@pytest.mark.slow
def test_256_released_shapes_round_trip(writer, tmp_path):
    cfg = preset("256")
    torch.manual_seed(0)
    G_ema = Generator(cfg).eval()
    assert len(G_ema.state_dict()) == 115
    assert sum(p.numel() for p in G_ema.parameters()) == 32_105_941
    D = Discriminator(cfg).eval()
    path = writer.write(tmp_path / "network-snapshot-025000.pkl", writer.snapshot(cfg, D=D, G_ema=G_ema))
    ckpt = import_official(path)
    assert ckpt.cfg.replace(name="256") == cfg
    frames = render(load_imported(ckpt, "G_ema"), cfg, n=1, times=[37.25])
    assert torch.equal(frames, render(G_ema, cfg, n=1, times=[37.25]))
    assert frames.shape == (1, 1, 3, 256, 256)
    assert all(torch.equal(ckpt.module_state("D")[k], v) for k, v in D.state_dict().items())
    assert not (tmp_path / "EMBEDDED_CODE_RAN").exists()


# ------------------------------------------------------------------------------------------ image-only pickles

def image_model(G: Generator, seed: int = 0) -> nn.Module:
    """Our generator rearranged as a StyleGAN2-ADA image generator: `b4.const`, a 4x4 conv without motion
    channels, no motion encoder, and per-pixel noise inputs (noise_const buffer, noise_strength)."""
    img = copy.deepcopy(G)
    syn, c = img.synthesis, G.cfg.synthesis.channels(4)
    del syn.motion_encoder
    syn.b4.const = nn.Parameter(G.synthesis.b4.input.input.const[0].detach().clone())
    del syn.b4.input
    conv1 = syn.b4.conv1
    conv1.weight = nn.Parameter(conv1.weight[:, :c].detach().clone())
    conv1.affine.weight = nn.Parameter(conv1.affine.weight[:c].detach().clone())
    conv1.affine.bias = nn.Parameter(conv1.affine.bias[:c].detach().clone())
    g = torch.Generator().manual_seed(seed)
    for m in img.modules():
        if type(m).__name__ == "SynthesisLayer":
            m.register_buffer("noise_const", torch.randn(m.resolution, m.resolution, generator=g))
            m.noise_strength = nn.Parameter(torch.tensor(0.3))
    return img


def test_image_only_stylegan2_pickle_renders_the_image_model_at_every_t(writer, tmp_path):
    cfg = preset("tiny")
    G, D, _ = random_nets(cfg, seed=11)
    s = cfg.synthesis
    E = writer.fakes.EasyDict
    kw = E(z_dim=cfg.mapping.z_dim, c_dim=0, w_dim=cfg.mapping.w_dim, img_resolution=s.img_resolution,
           img_channels=3, mapping_kwargs=E(num_layers=cfg.mapping.num_layers),
           synthesis_kwargs=E(channel_base=s.channel_base, channel_max=s.channel_max, num_fp16_res=0,
                              conv_clamp=s.conv_clamp))
    img = image_model(G)
    data = {"G": writer.persistent(img, _init_kwargs=kw), "G_ema": writer.persistent(img, _init_kwargs=kw),
            "D": writer.persistent(D, _init_kwargs=E()), "augment_pipe": None}
    path = writer.write(tmp_path / "stylegan2-ffhq-like.pkl", data)

    ckpt = import_official(path)
    assert ckpt.modules == ["G", "G_ema"]
    assert ckpt.cfg.mapping == cfg.mapping and ckpt.cfg.synthesis == cfg.synthesis
    assert len(ckpt.metadata["dropped_noise_tensors"]) == 2 * 2 * (2 * len(s.block_resolutions) - 1)
    G_img = load_imported(ckpt, "G_ema")
    expected = copy.deepcopy(G)  # the image model without noise: our G with the motion channels' weights zeroed
    with torch.no_grad():
        expected.synthesis.b4.conv1.weight[:, s.channels(4):] = 0
    times = [0.0, 2.5, 77.0, 5003.25]
    frames = render(G_img, cfg, times=times)
    # the motion channels differ (zero weights): only the convolution algorithm's rounding may differ
    torch.testing.assert_close(frames, render(expected, cfg, times=times), rtol=0, atol=1e-5)
    for j in range(1, len(times)):  # the same image at every t, for every motion seed
        assert torch.equal(frames[:, j], frames[:, 0])
    with pytest.raises(OfficialImportError, match="image-only"):
        import_official(path, modules=("G_ema", "D"))
    assert not (tmp_path / "EMBEDDED_CODE_RAN").exists()
