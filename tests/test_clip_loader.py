"""clipwb.trainers.kit.clip_loader: names, checkpoint files, errors (offline, tiny CLIP)."""
import os
import urllib.error
import urllib.request

import pytest
import torch
from clip import clip as clip_api
from clip.model import CLIP

from clipwb.errors import ConfigError, MissingFileError, UserInputError
from tests.tiny_clip import build_tiny_clip
from clipwb.trainers.kit.clip_loader import (CLIP_INPUT_RESOLUTION, CLIP_PIXEL_MEAN, CLIP_PIXEL_STD,
                                  check_input_size, clip_input_resolution, load_clip)


def _same_weights(model, reference):
    ref = reference.state_dict()
    return all(torch.equal(value, ref[key]) for key, value in model.state_dict().items())


def test_state_dict_path_gives_frozen_float32_clip(tiny_clip_path):
    model = load_clip(tiny_clip_path)
    assert isinstance(model, CLIP)
    assert model.dtype == torch.float32
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    # float32 checkpoints keep full precision (clip.model.build_model alone
    # would round them through fp16)
    assert _same_weights(model, build_tiny_clip())


def test_wrapped_state_dict_and_module_prefix(tmp_path):
    reference = build_tiny_clip(seed=3)
    wrapped = {"state_dict": {"module." + k: v for k, v in reference.state_dict().items()},
               "epoch": 7}
    path = tmp_path / "wrapped.pth.tar"
    torch.save(wrapped, path)
    assert _same_weights(load_clip(str(path)), reference)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_torchscript_archive(tmp_path):
    reference = build_tiny_clip(seed=1)
    traced = torch.jit.trace(
        reference, (torch.randn(1, 3, 32, 32), torch.zeros(1, 77, dtype=torch.long)),
        check_trace=False)
    path = tmp_path / "tiny_jit.pt"
    traced.save(str(path))
    model = load_clip(str(path))
    assert _same_weights(model, reference)
    tokens = clip_api.tokenize(["a photo of a cat."])
    with torch.no_grad():
        assert torch.allclose(model.encode_text(tokens), reference.encode_text(tokens))


def test_missing_path_names_the_file(tmp_path):
    missing = str(tmp_path / "nope" / "ViT-B-16.pt")
    with pytest.raises(MissingFileError, match="no such checkpoint file") as info:
        load_clip(missing)
    assert missing in str(info.value)


def test_unknown_name_lists_models():
    with pytest.raises(ConfigError, match="ViT-B/16") as info:
        load_clip("ViT-H/99")
    assert "ViT-H/99" in str(info.value)


def test_corrupt_file_is_reported(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserInputError, match="broken.pt"):
        load_clip(str(path))


def test_non_clip_state_dict_is_reported(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(UserInputError, match="not a CLIP checkpoint"):
        load_clip(str(path))


def test_offline_name_explains_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(MissingFileError) as info:
        load_clip("ViT-B/16")
    message = str(info.value)
    assert calls, "the download was attempted through the clip package"
    assert "~/.cache/clip/ViT-B-16.pt" in message
    assert "'ViT-B/16'" in message and "MODEL.BACKBONE.NAME" in message
    assert not os.path.exists(tmp_path / ".cache" / "clip" / "ViT-B-16.pt")
    # offline without any file: the shipped toy CLIP, as the scripts and train.py name it
    assert "CFG=toy bash scripts/disa/base2new.sh image_folder 1" in message
    assert "MODEL.BACKBONE.NAME ToyCLIP" in message
    assert load_clip("ToyCLIP").visual.input_resolution == 32  # what it points at loads offline


def test_offline_custom_download_root(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(MissingFileError, match="RN50.pt"):
        load_clip("RN50", download_root=str(tmp_path / "weights"))


def test_resolution_and_normalisation_constants(tiny_clip_path):
    model = load_clip(tiny_clip_path)
    assert clip_input_resolution(model) == 32
    assert check_input_size((32, 32), model) == 32
    with pytest.raises(ConfigError, match=r"INPUT.SIZE \(32, 32\)"):
        check_input_size((224, 224), model)
    assert set(CLIP_INPUT_RESOLUTION) == set(clip_api.available_models())
    assert CLIP_INPUT_RESOLUTION["ViT-L/14@336px"] == 336
    assert len(CLIP_PIXEL_MEAN) == len(CLIP_PIXEL_STD) == 3
    assert CLIP_PIXEL_MEAN[0] == pytest.approx(0.48145466)
