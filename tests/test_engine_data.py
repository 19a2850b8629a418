"""Datum, DatasetBase, samplers, transforms, DatasetWrapper and DataManager."""
import random
from collections import Counter

import pytest
from PIL import Image

import clipwb.engine
from clipwb.engine import (DataManager, DatasetBase, DatasetWrapper, Datum,
                    INTERPOLATION_MODES, build_data_loader, build_sampler,
                    build_transform, get_cfg_default)
from tests.engine_testkit import toy_cfg, write_toy_images


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (20, 12), (10, 200, 30)).save(path)
    return str(path)


def _data(image_file, labels, domains=None):
    domains = domains or [0] * len(labels)
    return [Datum(impath=image_file, label=y, domain=d, classname="c{}".format(y))
            for y, d in zip(labels, domains)]


def test_datum_fields_and_missing_file(image_file, tmp_path):
    item = Datum(impath=image_file, label=3, domain=1, classname="cat")
    assert (item.impath, item.label, item.domain, item.classname) == (
        image_file, 3, 1, "cat")
    if clipwb.engine.BACKEND == "builtin":  # real Dassl asserts without a message
        with pytest.raises(FileNotFoundError, match="nope.jpg"):
            Datum(impath=str(tmp_path / "nope.jpg"))


def test_dataset_base_properties(image_file):
    train = _data(image_file, [0, 2, 1, 2])
    ds = DatasetBase(train_x=train, test=train)
    assert ds.num_classes == 3
    assert ds.lab2cname == {0: "c0", 1: "c1", 2: "c2"}
    assert ds.classnames == ["c0", "c1", "c2"]
    assert ds.train_x is train and ds.train_u is None and ds.val is None


def test_generate_fewshot_dataset(image_file):
    ds = DatasetBase(train_x=_data(image_file, [0]))
    source = _data(image_file, [0] * 5 + [1] * 2 + [2] * 4)
    random.seed(0)
    few = ds.generate_fewshot_dataset(source, num_shots=3)
    assert Counter(d.label for d in few) == {0: 3, 1: 2, 2: 3}
    few = ds.generate_fewshot_dataset(source, num_shots=3, repeat=True)
    assert Counter(d.label for d in few) == {0: 3, 1: 3, 2: 3}
    a, b = ds.generate_fewshot_dataset(source, source, num_shots=1)
    assert len(a) == len(b) == 3
    assert ds.generate_fewshot_dataset(source, num_shots=-1) is source
    # the same seed gives the same shots
    random.seed(5)
    first = [id(d) for d in ds.generate_fewshot_dataset(source, num_shots=2)]
    random.seed(5)
    assert first == [id(d) for d in ds.generate_fewshot_dataset(source, num_shots=2)]


def test_split_by_label_and_domain(image_file):
    ds = DatasetBase(train_x=_data(image_file, [0]))
    data = _data(image_file, [1, 0, 1], domains=[2, 2, 5])
    by_label = ds.split_dataset_by_label(data)
    by_domain = ds.split_dataset_by_domain(data)
    assert {k: len(v) for k, v in by_label.items()} == {1: 2, 0: 1}
    assert {k: len(v) for k, v in by_domain.items()} == {2: 2, 5: 1}


def test_check_input_domains(image_file):
    class Domains(DatasetBase):
        domains = ["photo", "sketch"]

    ds = Domains(train_x=_data(image_file, [0]))
    ds.check_input_domains(["photo"], ["sketch"])
    with pytest.raises(ValueError, match="cartoon"):
        ds.check_input_domains(["photo"], ["cartoon"])


def test_random_domain_sampler_balanced(image_file):
    data = _data(image_file, [0] * 24, domains=[0] * 8 + [1] * 8 + [2] * 8)
    random.seed(0)
    sampler = build_sampler("RandomDomainSampler", data_source=data,
                            batch_size=4, n_domain=2)
    idxs = list(iter(sampler))
    assert len(idxs) == len(sampler) and len(idxs) % 4 == 0
    for start in range(0, len(idxs), 4):
        counts = Counter(data[i].domain for i in idxs[start:start + 4])
        assert len(counts) == 2 and set(counts.values()) == {2}
    assert len(set(idxs)) == len(idxs)  # no image twice in an epoch


def test_seq_domain_sampler_has_every_domain(image_file):
    data = _data(image_file, [0] * 12, domains=[0] * 4 + [1] * 4 + [2] * 4)
    sampler = build_sampler("SeqDomainSampler", data_source=data, batch_size=6)
    idxs = list(iter(sampler))
    assert len(idxs) == 12
    for start in range(0, 12, 6):
        assert [data[i].domain for i in idxs[start:start + 6]] == [0, 0, 1, 1, 2, 2]


def test_random_class_sampler(image_file):
    data = _data(image_file, [0] * 4 + [1] * 4 + [2] * 1 + [3] * 6)
    sampler = build_sampler("RandomClassSampler", data_source=data,
                            batch_size=4, n_ins=2)
    idxs = list(iter(sampler))
    assert len(idxs) % 4 == 0
    for start in range(0, len(idxs), 4):
        counts = Counter(data[i].label for i in idxs[start:start + 4])
        assert len(counts) == 2 and set(counts.values()) == {2}


def test_plain_samplers_and_unknown(image_file):
    data = _data(image_file, [0, 1, 2])
    assert list(build_sampler("SequentialSampler", data_source=data)) == [0, 1, 2]
    assert sorted(build_sampler("RandomSampler", data_source=data)) == [0, 1, 2]
    with pytest.raises(ValueError, match="NoSampler"):
        build_sampler("NoSampler", data_source=data)


def test_transforms_sizes(image_file):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (16, 16)
    img = Image.open(image_file).convert("RGB")
    all_train = ["random_flip", "random_resized_crop", "normalize",
                 "colorjitter", "randomgrayscale", "gaussian_blur", "cutout",
                 "gaussian_noise", "random_translation"]
    cfg.INPUT.GB_K = 3
    cfg.INPUT.CUTOUT_LEN = 4
    for choices in (all_train, ["random_crop", "instance_norm"], [],
                    ["imagenet_policy"], ["randaugment"]):
        out = build_transform(cfg, is_train=True, choices=choices)(img)
        assert out.shape == (3, 16, 16), choices
    test_tfm = build_transform(cfg, is_train=False, choices=["normalize"])
    out = test_tfm(img)
    assert out.shape == (3, 16, 16)
    # normalization applied: a constant green image maps to known values
    expected_g = (200 / 255 - cfg.INPUT.PIXEL_MEAN[1]) / cfg.INPUT.PIXEL_STD[1]
    assert abs(out[1, 8, 8].item() - expected_g) < 1e-4
    assert set(INTERPOLATION_MODES) == {"bilinear", "bicubic", "nearest"}


def test_transform_errors():
    cfg = get_cfg_default()
    if clipwb.engine.BACKEND == "builtin":  # real Dassl asserts without a message
        with pytest.raises(ValueError, match="bogus"):
            build_transform(cfg, is_train=True, choices=["bogus"])
        with pytest.raises(ValueError, match="randaugment2"):
            build_transform(cfg, is_train=True, choices=["randaugment2"])
    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg, is_train=True) is None


def test_dataset_wrapper_items(image_file):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.K_TRANSFORMS = 2
    cfg.DATALOADER.RETURN_IMG0 = True
    tfm = build_transform(cfg, is_train=True, choices=["random_flip"])
    data = _data(image_file, [1], domains=[4])
    item = DatasetWrapper(cfg, data, transform=[tfm, tfm], is_train=True)[0]
    assert item["label"] == 1 and item["domain"] == 4 and item["index"] == 0
    assert item["impath"] == image_file
    assert isinstance(item["img"], list) and len(item["img"]) == 2
    assert item["img2"][0].shape == (3, 8, 8)
    assert item["img0"].shape == (3, 8, 8)
    item = DatasetWrapper(cfg, data, transform=tfm, is_train=False)[0]
    assert item["img"].shape == (3, 8, 8)  # K only applies to training


def test_corrupt_image_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    cfg = get_cfg_default()
    data = [Datum(impath=str(bad), label=0)]
    with pytest.raises(Exception, match="bad.jpg"):
        DatasetWrapper(cfg, data, transform=None)[0]


def test_build_data_loader_batches(image_file):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.NUM_WORKERS = 0
    tfm = build_transform(cfg, is_train=False)
    data = _data(image_file, [0, 1, 2, 0, 1])
    loader = build_data_loader(cfg, "SequentialSampler", data, batch_size=2,
                               tfm=tfm, is_train=True)
    assert len(loader) == 2  # drop_last for training
    batch = next(iter(loader))
    assert batch["img"].shape == (2, 3, 8, 8)
    assert batch["label"].tolist() == [0, 1] and batch["index"].tolist() == [0, 1]
    loader = build_data_loader(cfg, "SequentialSampler", data, batch_size=2,
                               tfm=tfm, is_train=False)
    assert len(loader) == 3


def test_data_manager_summary(tmp_path, capsys):
    write_toy_images(tmp_path)
    cfg = toy_cfg(tmp_path, tmp_path / "out")
    dm = DataManager(cfg)
    out = capsys.readouterr().out
    assert dm.num_classes == 3 and dm.num_source_domains == 0
    assert dm.lab2cname == {0: "red", 1: "green", 2: "blue"}
    assert len(dm.train_loader_x) == 4 and dm.train_loader_u is None
    assert len(dm.val_loader.dataset) == 6 and len(dm.test_loader.dataset) == 6
    assert "Loading dataset: ToyDataset" in out
    for row in ("Dataset    ToyDataset", "# classes  3", "# train_x  18",
                "# val      6", "# test     6"):
        assert row in out, row
