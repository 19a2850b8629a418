"""read_image decodes every image mode to the 8-bit RGB a hand computation gives.

Each case writes a tiny file in one mode (PNG or TIFF, lossless), reads it
back through the engine's ``read_image`` (what the DatasetWrapper calls on
the built-in engine, and on real Dassl under train.py) and compares pixels
with values worked out by hand from the module's rules
(clipwb/engine/builtin/utils/image_modes.py).
"""
import numpy as np
import pytest
from PIL import Image

from clipwb.engine.builtin.utils.io import read_image


def _pixels(path):
    img = read_image(str(path))
    assert img.mode == "RGB"
    return [img.getpixel((x, 0)) for x in range(img.size[0])]


def _gray(*values):
    return [(v, v, v) for v in values]


def _sixteen_bit_png(path):
    # 40000 / 257 = 155.6 -> 156 (convert("RGB") clips it to 255); 25700 = 100 * 257
    Image.fromarray(np.array([[0, 25700, 40000, 65535]], dtype=np.uint16)).save(path)
    return "I;16", _gray(0, 100, 156, 255)


def _sixteen_bit_big_endian_tiff(path):
    img = Image.new("I;16B", (3, 1))
    for x, value in enumerate((257, 40000, 65535)):
        img.putpixel((x, 0), value)
    img.save(path)
    return "I;16B", _gray(1, 156, 255)


def _int32_tiff(path):
    # mode I: read as 16-bit values; above 65535 clipped
    Image.fromarray(np.array([[514, 40000, 100000]], dtype=np.int32)).save(path)
    return "I", _gray(2, 156, 255)


def _float_unit_tiff(path):
    # every value in [0, 1]: 0..1 scale; 0.4 * 255 = 102, 0.9 * 255 = 229.5 -> 230
    Image.fromarray(np.array([[0.0, 0.4, 0.9, 1.0]], dtype=np.float32)).save(path)
    return "F", _gray(0, 102, 230, 255)


def _float_byte_range_tiff(path):
    # values beyond 1: PIL's 0..255 scale, clipped
    Image.fromarray(np.array([[0.4, 100.2, 300.0]], dtype=np.float32)).save(path)
    return "F", _gray(0, 100, 255)


def _palette_png(path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50])
    img.putpixel((1, 0), 1)
    img.save(path)
    return "P", [(10, 20, 30), (200, 100, 50)]


def _palette_transparent_png(path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50])
    img.putpixel((1, 0), 1)
    img.save(path, transparency=0)  # index 0 transparent: its colour is kept
    return "P", [(10, 20, 30), (200, 100, 50)]


def _cmyk_tiff(path):
    # R = (255 - C)(255 - K) / 255: (200, 100, 255) * 204 / 255 = (160, 80, 204)
    img = Image.new("CMYK", (2, 1), (55, 155, 0, 0))
    img.putpixel((1, 0), (55, 155, 0, 51))
    img.save(path)
    return "CMYK", [(200, 100, 255), (160, 80, 204)]


def _gray_alpha_png(path):
    # alpha dropped (as convert("RGB") in torchvision's and CLIP's pipelines)
    img = Image.new("LA", (2, 1), (100, 0))
    img.putpixel((1, 0), (30, 255))
    img.save(path)
    return "LA", _gray(100, 30)


def _rgba_png(path):
    img = Image.new("RGBA", (2, 1), (10, 20, 30, 0))
    img.putpixel((1, 0), (40, 50, 60, 128))
    img.save(path)
    return "RGBA", [(10, 20, 30), (40, 50, 60)]


def _one_bit_png(path):
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    img.save(path)
    return "1", _gray(0, 255)


@pytest.mark.parametrize("write, suffix", [
    (_sixteen_bit_png, ".png"), (_sixteen_bit_big_endian_tiff, ".tif"), (_int32_tiff, ".tif"),
    (_float_unit_tiff, ".tif"), (_float_byte_range_tiff, ".tif"), (_palette_png, ".png"),
    (_palette_transparent_png, ".png"), (_cmyk_tiff, ".tif"), (_gray_alpha_png, ".png"),
    (_rgba_png, ".png"), (_one_bit_png, ".png"),
], ids=["I;16-png", "I;16B-tiff", "I-tiff", "F-0..1", "F-0..255", "P", "P-transparency",
        "CMYK", "LA", "RGBA", "1-bit"])
def test_each_mode_decodes_to_the_hand_computed_rgb(tmp_path, write, suffix):
    path = tmp_path / ("image" + suffix)
    mode, expected = write(str(path))
    with Image.open(path) as stored:
        assert stored.mode == mode  # the file really holds that mode
    assert _pixels(path) == expected


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1"])
def test_eight_bit_modes_decode_as_dassls_reader_does(tmp_path, mode):
    """8-bit images give the pixels of convert("RGB") (Dassl's and torchvision's
    reader), so both engines and a host checkout see the same images."""
    rng = np.random.default_rng(0)
    bands = len(Image.new(mode, (1, 1)).getbands())
    data = rng.integers(0, 256, size=(6, 7, bands), dtype=np.uint8)
    img = Image.fromarray(data[..., 0] if bands == 1 else data, mode="L" if bands == 1 else None)
    if img.mode != mode:
        img = img.convert(mode)
    if mode == "P":
        img.info["transparency"] = 3
    path = tmp_path / ("image.tif" if mode == "CMYK" else "image.png")
    img.save(path)
    with Image.open(path) as stored:
        assert stored.mode == mode and (mode != "P" or "transparency" in stored.info)
        reference = np.asarray(stored.convert("RGB"))
    assert np.array_equal(np.asarray(read_image(str(path))), reference)
