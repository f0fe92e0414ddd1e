import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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
