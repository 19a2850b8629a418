import os

import pytest

# Tests run on the CPU, offline, on whichever engine the environment selects.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    """Path to a tiny CLIP state dict, loadable as MODEL.BACKBONE.NAME."""
    from tests.tiny_clip import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")


@pytest.fixture(scope="session", autouse=True)
def registered():
    """Every trainer and dataset registered, as train.py registers them."""
    from clipwb import registration

    registration.register_all()


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """One toy-world DATA folder for the whole run (written once, on first use)."""
    return str(tmp_path_factory.mktemp("toy_data"))
