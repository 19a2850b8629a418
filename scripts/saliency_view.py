"""Show which patches DiSa's saliency-aware masking keeps and drops.

For a few images of a split, writes a PNG grid with one row per image and
titled columns: the input ("image"), the saliency map over it ("saliency
map", red = salient) and the kept patches with the dropped ones greyed out
("kept patches"). On the toy world, where every image is drawn
procedurally, the shape's outline (its ground-truth mask,
``clipwb.toyworld.render.shape_mask``) is drawn on every panel in cyan.
The masks are computed by the trainer's own masking code
(``DiSa.frozen_pass`` -> ``patch_saliency`` -> ``keep_index``), so the
picture follows TRAINER.DISA.SALIENCY / MASK_RATIO / MASK_SELECTION::

    python scripts/saliency_view.py --root DATA --seed 1 \
        --config-file configs/trainers/DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml \
        --dataset-config-file configs/datasets/caltech101.yaml \
        --model-dir output/base2new/train_base/caltech101/shots_16/DiSa/<cfg>/seed1 \
        --load-epoch 20 --num-images 8 --out mask.png DATASET.SUBSAMPLE_CLASSES base

Without ``--model-dir`` the prompts are the untrained ones (the mask itself
only depends on the frozen CLIP; the prompted model's prediction is printed
per image). Flags and trailing KEY VALUE pairs are train.py's.
"""
import os
import os.path as osp
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import train  # noqa: E402  (registers the trainers and datasets)
from clipwb.engine import build_trainer, build_transform, read_image, set_random_seed  # noqa: E402
from clipwb.errors import ConfigError, UserInputError  # noqa: E402
from clipwb.toyworld.render import shape_mask  # noqa: E402
from clipwb.toyworld.writer import render_args  # noqa: E402
from clipwb.trainers.disa.saliency import keep_mask  # noqa: E402

PAD = 4
GREY = 0.5
DIM = 0.25  # share of the original pixel left in a dropped patch
OUTLINE = (0, 255, 255)  # the ground-truth shape outline (cyan: no toy shape is cyan)
TITLE_SIZES = range(16, 7, -1)  # font sizes tried, largest first, for titles to fit


def build_parser():
    parser = train.build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--num-images", type=int, default=8, help="images to show")
    parser.add_argument("--split", choices=("test", "train", "val"), default="test",
                        help="split the images come from")
    parser.add_argument("--out", default="saliency.png", help="PNG file to write")
    parser.add_argument("--scale", type=int, default=0,
                        help="integer upscaling of each panel (0: to about 224 px)")
    return parser


def pick(items, n):
    """``n`` items spread evenly over ``items`` (so that several classes show)."""
    if n >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(n - 1, 1))] for i in range(n)]


def split_items(trainer, split):
    dataset = trainer.dm.dataset
    items = {"test": dataset.test, "train": dataset.train_x, "val": dataset.val}[split]
    if not items:
        raise UserInputError("The {} split of {} is empty: choose another --split.".format(
            split, trainer.cfg.DATASET.NAME))
    return items


def to_pixels(image, cfg):
    """Normalised [3, H, W] -> float [H, W, 3] in 0..1."""
    mean = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.INPUT.PIXEL_STD).view(3, 1, 1)
    return (image.cpu().float() * std + mean).clamp(0, 1).permute(1, 2, 0)


def patch_map(values, height, width, patch):
    """Per-patch values [P] -> [H, W] (patch grid upsampled; the border past
    the last full patch gets the mean)."""
    gh, gw = height // patch, width // patch
    grid = values.float().view(gh, gw).repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    full = torch.full((height, width), float(values.float().mean()))
    full[:grid.shape[0], :grid.shape[1]] = grid
    return full


def panels(pixels, saliency, kept, patch):
    """The three panels of one row, float [H, W, 3] each."""
    height, width = pixels.shape[:2]
    heat = patch_map(saliency / saliency.max().clamp_min(1e-12), height, width, patch)
    colour = torch.stack([heat, 0.2 * torch.ones_like(heat), 1 - heat], dim=-1)
    heat_panel = 0.5 * pixels + 0.5 * colour
    keep = patch_map(kept.float(), height, width, patch).round().unsqueeze(-1)
    dropped_panel = pixels * keep + (DIM * pixels + (1 - DIM) * GREY) * (1 - keep)
    return [pixels, heat_panel, dropped_panel]


def _font(size):
    return ImageFont.load_default(size=size)


def _text_width(text, font):
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    return box[2] - box[0]


def title_lines(titles, width):
    """The font and each title's lines: the largest size at which every title
    fits ``width`` px on one line, else size 8 with one word a line."""
    for size in TITLE_SIZES:
        font = _font(size)
        if all(_text_width(t, font) <= width for t in titles):
            return font, [[t] for t in titles]
    return _font(TITLE_SIZES[-1]), [t.split() for t in titles]


def title_height(titles, width):
    """Height in px of the title strip above the panels."""
    font, lines = title_lines(titles, width)
    return max(len(l) for l in lines) * (font.size + 2) + PAD


def outline_mask(mask, width=2):
    """Boundary [H, W] (bool) of a float mask: the pixels of ``mask > 0.5``
    within ``width`` px of a pixel outside it."""
    inside = torch.from_numpy(np.ascontiguousarray(mask > 0.5)).float()[None, None]
    eroded = -F.max_pool2d(-inside, 2 * width + 1, stride=1, padding=width)
    return (inside - eroded)[0, 0].bool().numpy()


def grid_image(rows, scale, titles, outlines=None):
    """Rows of equally sized panels -> one PIL image with PAD px gaps, the
    column ``titles`` above them and, where ``outlines[r]`` (a bool [H*scale,
    W*scale] boundary) is given, that outline drawn on row r's panels."""
    height, width = rows[0][0].shape[:2]
    ph, pw = height * scale, width * scale
    columns = len(rows[0])
    top = title_height(titles, pw)
    canvas = Image.new("RGB", (columns * pw + (columns + 1) * PAD,
                               top + len(rows) * ph + (len(rows) + 1) * PAD), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, lines = title_lines(titles, pw)
    for c, title in enumerate(lines):
        for i, line in enumerate(title):
            x = PAD + c * (pw + PAD) + (pw - _text_width(line, font)) // 2
            draw.text((x, PAD // 2 + i * (font.size + 2)), line, fill=(0, 0, 0), font=font)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            tile = Image.fromarray((panel * 255).round().byte().numpy())
            tile = tile.resize((pw, ph), Image.NEAREST)
            if outlines is not None and outlines[r] is not None:
                pixels = np.array(tile)
                pixels[outlines[r]] = OUTLINE
                tile = Image.fromarray(pixels)
            canvas.paste(tile, (PAD + c * (pw + PAD), top + PAD + r * (ph + PAD)))
    return canvas


def column_titles(source, kept, total):
    """The three column titles."""
    return ["image", "saliency map ({})".format(source),
            "kept patches ({} of {})".format(kept, total)]


def ground_truth_outline(item, size):
    """The toy shape's outline at ``size`` px (None for any other image)."""
    args = render_args(item.impath)
    if args is None:
        return None
    label, domain, index, seed, _ = args
    return outline_mask(shape_mask(label, domain, index, seed, size=size, filled=True))


@torch.no_grad()
def render(trainer, items, scale):
    """The PNG grid and one description line per image."""
    cfg = trainer.cfg
    transform = build_transform(cfg, is_train=False)
    images = torch.stack([transform(read_image(item.impath)) for item in items])
    images = images.to(trainer.device)
    labels = torch.tensor([item.label for item in items], device=trainer.device)
    frozen = trainer.frozen_pass(images)
    saliency = trainer.patch_saliency(frozen, labels)
    keep = trainer.keep_index(saliency)
    kept = keep_mask(keep, saliency.shape[1])
    predictions = trainer.model_inference(images).argmax(dim=1)
    classnames = trainer.dm.dataset.classnames
    patch = trainer.patch_size
    rows, lines = [], []
    for i, item in enumerate(items):
        rows.append(panels(to_pixels(images[i], cfg), saliency[i].cpu(), kept[i].cpu(), patch))
        lines.append("{}: {} (predicted: {}), kept {} of {} patches".format(
            item.impath, classnames[item.label], classnames[predictions[i]], keep.shape[1],
            saliency.shape[1]))
    if not scale:
        scale = max(1, 224 // images.shape[-2])
    height, width = images.shape[-2:]
    outlines = [ground_truth_outline(item, height * scale) if height == width else None
                for item in items]
    titles = column_titles(cfg.TRAINER.DISA.SALIENCY, keep.shape[1], saliency.shape[1])
    if any(o is not None for o in outlines):
        lines.append("Cyan: the shape's outline (ground truth)")
    return grid_image(rows, scale, titles, outlines), lines


def main(args):
    if args.num_images < 1:
        raise ConfigError("--num-images {} must be >= 1.".format(args.num_images))
    if args.scale < 0:
        raise ConfigError("--scale {} must be >= 0.".format(args.scale))
    args.trainer = args.trainer or "DiSa"
    cfg = train.setup_cfg(args)
    train.check_names(cfg)
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)  # the same few-shot sample as the training run
    trainer = build_trainer(cfg)
    if not hasattr(trainer, "patch_saliency"):
        raise ConfigError("--trainer {} has no saliency-aware masking: use --trainer DiSa.".format(
            cfg.TRAINER.NAME))
    if args.model_dir:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
    trainer.set_model_mode("eval")
    items = pick(split_items(trainer, args.split), args.num_images)
    image, lines = render(trainer, items, args.scale)
    folder = osp.dirname(osp.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    image.save(args.out)
    print("\n".join(lines))
    print("Columns: image | saliency (red = salient) | kept patches (dropped ones greyed)")
    print("Wrote {} ({}x{} px)".format(args.out, image.width, image.height))


if __name__ == "__main__":
    _args = build_parser().parse_args()
    try:
        main(_args)
    except UserInputError as err:
        print("Error: {}".format(err), file=sys.stderr)
        sys.exit(2)
