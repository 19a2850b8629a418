"""Procedural toy images: a coloured shape on a background, in four domains.

Every image is a pure function of ``(label, domain, index, seed)``: the random
nuisances (size, position, rotation, colour jitter, background, noise) come
from a NumPy generator seeded with exactly those four numbers, and drawing
uses only PIL and NumPy, so the same arguments always give the same pixels.
:func:`shape_mask` gives the shape's pixel mask of any image (the ground truth
of saliency measurements): the same layout drawn by the same call on a mask.

Classes are colour x shape (5 x 5 = 25, named like ``"red circle"``). Their
label order is chosen so that the CoOp base/new split is meaningful: the base
half (the first ``ceil(25 / 2) = 13`` labels) contains every colour and every
shape at least twice, so the new half is made of *unseen combinations* of
seen attributes. Labels are ordered by the diagonal ``(shape - colour) mod 5``;
the last diagonal (labels 20-24, one class per colour and per shape) is what
``toyworld.train_clip`` holds out of CLIP training entirely.

Domains:

* ``plain``    filled shape on a light, almost uniform background;
* ``textured`` filled shape on a muted striped / checkered / dotted background;
* ``sketch``   outline only, on paper-white;
* ``noisy``    filled shape on a random background, with strong pixel noise.
"""
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from clipwb.errors import ConfigError

COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 25),
    "purple": (145, 45, 185),
}
COLOUR_NAMES = tuple(COLOURS)
SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross")
DOMAINS = ("plain", "textured", "sketch", "noisy")

SUPERSAMPLE = 4  # drawn this many times larger, then downsampled (anti-aliasing)


def _class_order():
    n = len(SHAPE_NAMES)
    pairs = []
    for diag in range(n):
        for c in range(len(COLOUR_NAMES)):
            pairs.append((c, (c + diag) % n))
    return tuple(pairs)


#: ``CLASS_ATTRS[label] = (colour_index, shape_index)``.
CLASS_ATTRS = _class_order()
#: Natural-language class names, indexed by label.
CLASSNAMES = tuple("{} {}".format(COLOUR_NAMES[c], SHAPE_NAMES[s]) for c, s in CLASS_ATTRS)
NUM_CLASSES = len(CLASSNAMES)


def class_folder(label):
    """Folder name of a class on disk (``"red circle"`` -> ``"red_circle"``)."""
    return CLASSNAMES[label].replace(" ", "_")


def _check(label, domain):
    if not 0 <= int(label) < NUM_CLASSES:
        raise ConfigError("toy label {!r} out of range: use 0..{}".format(label, NUM_CLASSES - 1))
    if domain not in DOMAINS:
        raise ConfigError("toy domain {!r} unknown: choose one of {}".format(domain, ", ".join(DOMAINS)))


def _shape_polygon(shape, cx, cy, r, angle):
    """Vertices of ``shape`` centred at (cx, cy) with outer radius r, rotated by angle."""
    if shape == "square":
        pts = [(math.cos(a), math.sin(a)) for a in (math.pi / 4 + k * math.pi / 2 for k in range(4))]
        pts = [(x * 0.92, y * 0.92) for x, y in pts]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
        pts = [(x, y + 0.2) for x, y in pts]  # centre the bounding box
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    elif shape == "cross":
        w = 0.3
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w),
               (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
        pts = [(x * 0.95, y * 0.95) for x, y in pts]
    else:
        raise AssertionError(shape)
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in pts]


def _muted(rng, low, high):
    """A low-saturation colour with brightness in [low, high]."""
    base = rng.uniform(low, high)
    tint = rng.uniform(-12, 12, size=3)
    return tuple(int(v) for v in np.clip(base + tint, 0, 255))


def _background(rng, domain, big):
    if domain == "plain":
        return Image.new("RGB", (big, big), _muted(rng, 215, 250))
    if domain == "sketch":
        return Image.new("RGB", (big, big), _muted(rng, 240, 255))
    if domain == "noisy":
        return Image.new("RGB", (big, big), _muted(rng, 90, 235))
    # textured: two muted tones in a random pattern
    a, b = _muted(rng, 150, 235), _muted(rng, 80, 170)
    img = Image.new("RGB", (big, big), a)
    draw = ImageDraw.Draw(img)
    kind = int(rng.integers(3))
    step = int(rng.integers(3, 7)) * SUPERSAMPLE
    if kind == 0:  # diagonal stripes
        for off in range(-big, big, 2 * step):
            draw.polygon([(off, 0), (off + step, 0), (off + step + big, big), (off + big, big)], fill=b)
    elif kind == 1:  # checkerboard
        for y in range(0, big, step):
            for x in range(0, big, step):
                if (x // step + y // step) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=b)
    else:  # dots
        for y in range(step // 2, big, step):
            for x in range(step // 2, big, step):
                rad = step // 3
                draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=b)
    return img


@dataclass(frozen=True)
class Layout:
    """Where and how the shape of one image is drawn (supersampled pixels)."""

    shape: str
    colour: tuple
    cx: float
    cy: float
    r: float
    angle: float
    line: int
    outline: bool  # sketch: outline only


def _layout(rng, shape_idx, colour_idx, domain, big):
    """The shape's nuisances, drawn from ``rng`` right after the background."""
    colour = np.array(COLOURS[COLOUR_NAMES[colour_idx]], dtype=float)
    colour = tuple(int(v) for v in np.clip(colour + rng.uniform(-18, 18, size=3), 0, 255))
    r = rng.uniform(0.24, 0.42) * big  # size nuisance
    margin = r * 1.05
    cx = rng.uniform(margin, big - margin)
    cy = rng.uniform(margin, big - margin)
    angle = rng.uniform(-0.3, 0.3)
    return Layout(SHAPE_NAMES[shape_idx], colour, cx, cy, r, angle,
                  max(1, int(round(0.07 * big))), domain == "sketch")


def _draw_shape(draw, layout, ink, filled=None):
    """Draw the shape of ``layout`` with ``ink`` (the image's colour, or 255
    on a mask). ``filled`` None follows the domain (outline on sketch); True
    fills the shape's region whatever the domain."""
    outline = layout.outline if filled is None else not filled
    if layout.shape == "circle":
        r = layout.r
        box = [layout.cx - r, layout.cy - r, layout.cx + r, layout.cy + r]
        if outline:
            draw.ellipse(box, outline=ink, width=layout.line)
        else:
            draw.ellipse(box, fill=ink)
        return
    pts = _shape_polygon(layout.shape, layout.cx, layout.cy, layout.r, layout.angle)
    if outline:
        draw.line(pts + [pts[0], pts[1]], fill=ink, width=layout.line, joint="curve")
    else:
        draw.polygon(pts, fill=ink)


def _start(label, domain, index, seed, size):
    """The image's generator, background and layout (in the drawing order)."""
    _check(label, domain)
    colour_idx, shape_idx = CLASS_ATTRS[label]
    rng = np.random.default_rng([int(seed), DOMAINS.index(domain), int(label), int(index)])
    big = int(size) * SUPERSAMPLE
    background = _background(rng, domain, big)
    return rng, background, _layout(rng, shape_idx, colour_idx, domain, big)


def render(label, domain="plain", index=0, seed=0, size=32):
    """Render toy image ``index`` of class ``label`` in ``domain`` (an RGB PIL image).

    Pure function: the same arguments always give the same pixels. ``size`` is
    the side in pixels (32 = the tiny CLIP's input resolution).
    """
    rng, img, layout = _start(label, domain, index, seed, size)
    _draw_shape(ImageDraw.Draw(img), layout, layout.colour)
    img = img.resize((int(size), int(size)), Image.LANCZOS)
    if domain == "noisy":
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + rng.normal(0.0, 38.0, size=arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
    return img


def shape_mask(label, domain="plain", index=0, seed=0, size=32, filled=False):
    """The shape's pixel mask of :func:`render`'s image (same arguments):
    float [size, size] in 0..1, the share of each pixel the shape's ink covers.

    The shape is drawn with the image's own layout and drawing call on a
    black supersampled canvas, then box-averaged down to ``size``:
    m(p) = |ink ∩ p| / |p| over the SUPERSAMPLE x SUPERSAMPLE sub-pixels of
    pixel p. On ``sketch`` the ink is the outline; ``filled=True`` gives the
    shape's whole region in every domain.
    """
    _, background, layout = _start(label, domain, index, seed, size)
    canvas = Image.new("L", background.size, 0)
    _draw_shape(ImageDraw.Draw(canvas), layout, 255, filled=True if filled else None)
    canvas = canvas.resize((int(size), int(size)), Image.BOX)
    return np.asarray(canvas, dtype=np.float32) / 255.0
