"""Every PIL image mode to 8-bit RGB: the decoder behind ``read_image``.

PIL's ``convert("RGB")`` (what Dassl, torchvision's ``ImageFolder`` loader
and CLIP's preprocessing call) is right for the 8-bit modes but clips the
others to 0..255 without scaling: a 16-bit grayscale PNG (``I;16``) comes
out black and white, a float image in 0..1 (``F``) all black. ``to_rgb``
scales those and leaves every 8-bit mode to ``convert("RGB")``, so an 8-bit
image decodes to the same pixels as on Dassl:

- ``RGB``: as it is; ``L``, ``1`` (0 / 255), ``P``, ``CMYK`` (PIL's
  ``R = (255 - C)(255 - K) / 255``), ``YCbCr``: ``convert("RGB")``;
- alpha (``RGBA``, ``LA``, ``P`` with transparency, ``PA``, premultiplied
  ``RGBa`` / ``La``) is dropped, the stored colour of each pixel kept: what
  ``convert("RGB")`` does in torchvision's and CLIP's pipelines, so the
  pretrained CLIP sees such images as it did in its own evaluations;
- 16-bit integer grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) and
  32-bit integer ``I`` (PIL's mode of 16-bit PNGs in older versions) are
  read as 0..65535: ``v8 = round(v / 257)`` (65535 -> 255, 40000 -> 156),
  values outside clipped;
- 32-bit float ``F`` is read as 0..1 (``v8 = round(255 v)``) when every
  value lies in [0, 1], else as 0..255 (PIL's own float convention), then
  clipped;
- CIE ``LAB`` (TIFF) goes through littlecms to sRGB (``convert("RGB")``
  would only relabel its bands).
"""
import numpy as np

__all__ = ["to_rgb"]

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")


def _gray_to_rgb(values):
    from PIL import Image

    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def to_rgb(img):
    """``img`` (any mode) as an 8-bit ``RGB`` PIL image (see the module for each mode)."""
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode in SIXTEEN_BIT_MODES:
        return _gray_to_rgb(np.asarray(img, dtype=np.float32) / np.float32(257.0))
    if mode == "F":
        values = np.asarray(img, dtype=np.float32)
        finite = values[np.isfinite(values)]
        in_unit = finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0)
        return _gray_to_rgb(np.nan_to_num(values * np.float32(255.0 if in_unit else 1.0)))
    if mode == "La":  # premultiplied; PIL converts it only to LA
        img, mode = img.convert("LA"), "LA"
    if mode == "LAB":
        from PIL import ImageCms

        lab_to_srgb = ImageCms.buildTransformFromOpenProfiles(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(img, lab_to_srgb)
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")
