import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# gradio_client (the end-to-end tests' client) sends usage telemetry to huggingface.co from a thread unless told
# not to; the tests reach no host but localhost (see the network guard below).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# One thread: the test models are tiny, and on 2 shared cores more threads only oversubscribe them.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_cfg():
    from core.config import preset

    return preset("tiny")


@pytest.fixture()
def tiny_G(tiny_cfg):
    from core.generator import Generator

    torch.manual_seed(0)
    G = Generator(tiny_cfg).eval()
    with torch.no_grad():  # a non-zero w_avg makes truncation tests meaningful
        G.mapping.w_avg.normal_(0, 0.5)
    return G


@pytest.fixture()
def G(tiny_cfg):
    """A tiny random-weight generator in eval mode (seeded: the same weights in every test)."""
    from core.generator import Generator

    torch.manual_seed(0)
    return Generator(tiny_cfg).eval()


@pytest.fixture(autouse=True, scope="session")
def _private_weights_cache(tmp_path_factory):
    """Tests never read or fill the user's cache (~/.cache/stylegan-v-studio): weights found there would
    make them pass or fail differently from machine to machine. Explicit weight files are unset too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SGV_CACHE", str(tmp_path_factory.mktemp("sgv-cache")))
        mp.delenv("SGV_CLIP_WEIGHTS", raising=False)
        mp.delenv("SGV_LPIPS_WEIGHTS", raising=False)
        yield


# ------------------------------------------------------------------------------------------ no network
# The default suite never reaches beyond this machine: weight resolvers are called offline (explicit
# parameters) or with stand-ins. While a test runs, a connection or DNS lookup for any other host, and any
# `pip download`, is refused and fails that test, so a resolver that would download is caught even where CI
# has a network. Tests marked `slow` (real weights, fetched where a network exists) are exempt.

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", "", None}
_guard = {"on": False, "attempts": []}


def _is_local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    return host in _LOCAL_HOSTS or (isinstance(host, str) and host.startswith("127."))


def pytest_configure(config):
    import socket

    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, \
        socket.getaddrinfo

    def blocked(host) -> bool:
        return _guard["on"] and not _is_local(host)

    def refuse(what: str) -> OSError:
        _guard["attempts"].append(what)
        return ConnectionRefusedError(f"tests may not reach the network ({what})")

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and blocked(address[0]):
            raise refuse(f"connect {address[0]}:{address[1]}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and blocked(address[0]):
            raise refuse(f"connect {address[0]}:{address[1]}")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if blocked(host):
            _guard["attempts"].append(f"DNS lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not reach the network (DNS lookup {host})")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo

    import subprocess

    class GuardedPopen(subprocess.Popen):  # `pip download` (the resolvers' registry routes) is a download too
        def __init__(self, args, *a, **kw):
            words = [str(x) for x in args] if isinstance(args, (list, tuple)) else str(args).split()
            if _guard["on"] and "pip" in words and "download" in words:
                raise refuse("pip download " + " ".join(w for w in words if "==" in w))
            super().__init__(args, *a, **kw)

    subprocess.Popen = GuardedPopen


@pytest.fixture(autouse=True)
def _no_network(request):
    _guard["attempts"].clear()
    _guard["on"] = request.node.get_closest_marker("slow") is None
    try:
        yield
    finally:
        _guard["on"] = False
    tried, _guard["attempts"][:] = list(_guard["attempts"]), []
    if tried:
        pytest.fail(f"the test tried to reach the network: {', '.join(sorted(set(tried)))}")
