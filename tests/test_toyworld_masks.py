"""Ground-truth shape masks of the toy world: the same drawing as the image,
and the images themselves unchanged by the refactoring that shares it."""
import hashlib

import numpy as np
import pytest
from PIL import Image

from clipwb.errors import ConfigError
from clipwb.toyworld import render as R
from clipwb.toyworld import writer as W

#: sha256 of the renders below, taken before image and mask shared one
#: drawing: the shipped toy CLIP and every written dataset depend on them.
RENDER_DIGEST = "881be6cb505ba4b3827822525b0c2b624df251431da89570ea7d23816d73ab09"


def test_rendered_images_are_byte_for_byte_unchanged():
    digest = hashlib.sha256()
    for size in (32, 64):
        for domain in R.DOMAINS:
            for label in range(R.NUM_CLASSES):
                for index in (0, 7, 23):
                    digest.update(R.render(label, domain, index, 0, size).tobytes())
    assert digest.hexdigest() == RENDER_DIGEST


@pytest.mark.parametrize("domain", ["plain", "textured", "noisy"])
def test_filled_mask_marks_the_shape_colour_pixels(domain):
    # red circle on a background far from red: pixels the mask covers fully
    # are red in the image, pixels it does not touch are not
    for index in range(3):
        image = np.asarray(R.render(0, domain, index, seed=2, size=64), dtype=float)
        mask = R.shape_mask(0, domain, index, seed=2, size=64)
        assert mask.shape == (64, 64) and 0 <= mask.min() and mask.max() == 1
        red = np.array(R.COLOURS["red"], dtype=float)
        distance = np.abs(image - red).sum(-1)
        if domain == "noisy":  # strong pixel noise: compare means
            assert distance[mask == 1].mean() + 100 < distance[mask == 0].mean()
        else:
            assert np.median(distance[mask == 1]) < 80
            assert np.median(distance[mask == 0]) > 200


def test_sketch_mask_is_the_outline_and_filled_is_the_region():
    outline = R.shape_mask(3, "sketch", 4, seed=0, size=64)
    region = R.shape_mask(3, "sketch", 4, seed=0, size=64, filled=True)
    image = np.asarray(R.render(3, "sketch", 4, seed=0, size=64), dtype=float)
    ink = np.abs(image - image[outline == 0].mean(0)).sum(-1)  # distance from the paper
    assert ink[outline > 0.9].mean() > 150 and ink[outline == 0].mean() < 30
    inside = (region == 1) & (outline == 0)
    assert inside.sum() > 20 and ink[inside].mean() < 30
    # the same shape geometry as the filled domains' mask of that class
    assert (region > 0).sum() > (outline > 0.9).sum()


def test_mask_geometry_follows_the_arguments_and_checks_them():
    a = R.shape_mask(5, "plain", 1, seed=0)
    assert a.shape == (32, 32)
    assert np.array_equal(a, R.shape_mask(5, "plain", 1, seed=0))
    assert not np.array_equal(a, R.shape_mask(5, "plain", 2, seed=0))
    with pytest.raises(ConfigError, match="0..24"):
        R.shape_mask(25)


def test_render_args_locate_a_written_file(tmp_path):
    folder = W.write_toy_dataset(str(tmp_path), n_train=2, n_val=1, n_test=2,
                                 domains=("plain", "noisy"))
    path = tmp_path / "toy_shapes" / "images" / "noisy" / "blue_circle" / "test_001.jpg"
    label = R.CLASSNAMES.index("blue circle")
    args = W.render_args(str(path))
    assert args == (label, "noisy", 2 + 1 + 1, 0, 32)
    written = np.asarray(Image.open(path), dtype=float)
    rendered = np.asarray(R.render(*args), dtype=float)
    assert np.abs(written - rendered).mean() < 4  # the same image, through JPEG
    assert W.render_args(str(tmp_path / "elsewhere.jpg")) is None
    assert folder.endswith("toy_shapes")


def test_saliency_view_outlines_the_toy_shape_and_titles_the_columns(tmp_path):
    import importlib.util
    import os

    import torch
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "saliency_view", os.path.join(repo, "scripts", "saliency_view.py"))
    view = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(view)

    W.write_toy_dataset(str(tmp_path), n_train=1, n_val=1, n_test=1, domains=("plain",))

    class Item:
        impath = str(tmp_path / "toy_shapes" / "images" / "plain" / "red_circle" / "test_000.jpg")

    outline = view.ground_truth_outline(Item, 64)
    region = R.shape_mask(0, "plain", 2, 0, size=64, filled=True) > 0.5
    assert outline.shape == (64, 64) and outline.sum() > 20
    assert np.all(region[outline])  # the outline is the region's border, inside it
    assert not outline[region.nonzero()[0].mean().astype(int), region.nonzero()[1].mean().astype(int)]
    Item.impath = str(tmp_path / "elsewhere.jpg")
    assert view.ground_truth_outline(Item, 64) is None

    panel = torch.full((32, 32, 3), 0.5)
    titles = view.column_titles("value", 11, 16)
    image = view.grid_image([[panel] * 3], 2, titles, [outline])
    top = view.title_height(titles, 64)
    assert image.size == (3 * 64 + 4 * 4, top + 64 + 2 * 4)
    pixels = np.asarray(image)
    for column in range(3):
        tile = pixels[top + 4:top + 68, 4 + 68 * column:68 + 68 * column]
        assert np.array_equal(np.all(tile == view.OUTLINE, axis=-1), outline)
        assert pixels[:top, 4 + 68 * column:68 + 68 * column].min() < 100  # title text


def test_the_64_px_sibling_is_the_toy_clip_at_another_size():
    from clipwb.toyworld import train_clip as T

    small, large = T.build_toy_clip(0), T.build_toy_clip(0, size=64)
    assert small.visual.positional_embedding.shape[0] == 1 + 16
    assert large.visual.positional_embedding.shape[0] == 1 + 64  # patch 8 at 64 px
    # the report renders the dataset's drawings at the model's own size
    rows = T.report(large.eval(), per_class=1, domains=("plain",))
    assert rows[0]["domain"] == "plain" and 0 <= rows[0]["base"] <= 100
