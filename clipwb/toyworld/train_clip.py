"""Train the toy CLIP: a small ``clip.model.CLIP`` learned contrastively on toy images.

    python -m clipwb.toyworld.train_clip --out clipwb/toyworld/toy_clip.pt

Images are rendered by :mod:`clipwb.toyworld.render` (all four domains, a render seed
disjoint from the dataset's) and augmented on the fly; captions come from many
templates ("a photo of a red circle.", "a circle that is red.", "a drawing of a
red circle." ...). The classes of the last label diagonal (20-24, all in the
dataset's *new* half, one per colour and per shape) are held out of training
entirely, so zero-shot accuracy on them measures composition of seen words.

Loss (CLIP, Radford et al. 2021, Sec. 2.3, with class-level captions): per step
one caption per training class; image->text cross-entropy over the class
captions plus text->image cross-entropy whose target is uniform over the
batch images of that class; two auxiliary image->text terms over colour-only
("something red.") and shape-only ("a circle.") captions (weight
``--attr-weight``), which tie each word to its visual attribute.

The result is an fp16 ``state_dict`` with exactly the keys of
``clip.model.CLIP.state_dict()`` (``clip.model.build_model(sd)`` rebuilds it),
and the zero-shot accuracies of the *saved* weights are printed.
"""
import argparse
import io
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from .render import CLASS_ATTRS, CLASSNAMES, COLOUR_NAMES, DOMAINS, NUM_CLASSES, SHAPE_NAMES, render
from .writer import DEFAULTS, JPEG_SETTINGS

TOY_CLIP_KWARGS = dict(
    embed_dim=64,
    image_resolution=32,
    vision_layers=4,
    vision_width=128,
    vision_patch_size=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=3,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ZERO_SHOT_TEMPLATE = "a photo of a {}."

#: Labels never shown to the toy CLIP (images or captions): the diagonal
#: (shape - colour) mod 5 == 4, i.e. labels 20..24, all in the new half.
HELD_OUT = tuple(l for l, (c, s) in enumerate(CLASS_ATTRS) if (s - c) % len(SHAPE_NAMES) == 4)
BASE = tuple(range(math.ceil(NUM_CLASSES / 2)))
NOVEL = tuple(range(math.ceil(NUM_CLASSES / 2), NUM_CLASSES))
TRAIN_CLASSES = tuple(l for l in range(NUM_CLASSES) if l not in HELD_OUT)

# "{c}" = colour, "{s}" = shape
CLASS_TEMPLATES = (
    "a photo of a {c} {s}.", "a {c} {s}.", "a photo of the {c} {s}.", "an image of a {c} {s}.",
    "a picture of a {c} {s}.", "a drawing of a {c} {s}.", "a sketch of a {c} {s}.",
    "an outline of a {c} {s}.", "a {c} {s} on a patterned background.",
    "a {c} {s} on a textured background.", "a noisy photo of a {c} {s}.",
    "a blurry photo of a {c} {s}.", "a small {c} {s}.", "a big {c} {s}.",
    "a photo of the small {c} {s}.", "a photo of the large {c} {s}.", "itap of a {c} {s}.",
    "a bad photo of the {c} {s}.", "art of the {c} {s}.", "a {c} {s} in a video game.",
    "a {s} that is {c}.", "a {c} coloured {s}.", "a {s} in {c}.", "a {c} shape: a {s}.",
    "a {s}, {c}.", "{c} {s}.",
)
COLOUR_TEMPLATES = ("something {}.", "a {} object.", "a {} shape.", "a photo of something {}.",
                    "the colour {}.")
SHAPE_TEMPLATES = ("a {}.", "a {} shape.", "a photo of a {}.", "the shape of a {}.",
                   "a drawing of a {}.")


def jpeg_roundtrip(img):
    """Encode and decode ``img`` with the dataset's JPEG settings."""
    from PIL import Image

    buf = io.BytesIO()
    img.save(buf, **JPEG_SETTINGS)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def render_batch(labels, domains, indices, seed, size=32):
    """Render (and JPEG round-trip) images as a uint8 tensor N x 3 x size x size."""
    arrs = [np.asarray(jpeg_roundtrip(render(l, d, i, seed, size)))
            for l, d, i in zip(labels, domains, indices)]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


def normalize(images_uint8):
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images_uint8.float() / 255.0 - mean) / std


def augment(images_uint8, gen):
    """Random scale / shift / flip and brightness-contrast jitter (hue untouched)."""
    n = images_uint8.shape[0]
    x = images_uint8.float() / 255.0
    scale = torch.empty(n).uniform_(0.8, 1.2, generator=gen)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = torch.empty(n, 2).uniform_(-0.15, 0.15, generator=gen)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    bright = torch.empty(n, 1, 1, 1).uniform_(-0.1, 0.1, generator=gen)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + bright).clamp(0, 1)
    return normalize(x * 255.0)


def build_pool(labels, per_domain, seed, size=32, domains=DOMAINS):
    """Training images of ``labels``: ``per_domain`` renders per class and domain."""
    lab, dom, idx = [], [], []
    for d in domains:
        for l in labels:
            for i in range(per_domain):
                lab.append(l)
                dom.append(d)
                idx.append(i)
    return render_batch(lab, dom, idx, seed, size), torch.tensor(lab)


def dataset_test_images(labels, domain="plain", per_class=None, seed=DEFAULTS["seed"],
                        size=DEFAULTS["size"]):
    """The toy dataset's test images (same pixels as the files the writer saves)."""
    per_class = DEFAULTS["n_test"] if per_class is None else per_class
    first = DEFAULTS["n_train"] + DEFAULTS["n_val"]
    lab = [l for l in labels for _ in range(per_class)]
    idx = [first + k for _ in labels for k in range(per_class)]
    return render_batch(lab, [domain] * len(lab), idx, seed, size), torch.tensor(lab)


@torch.no_grad()
def zero_shot_accuracy(model, images_uint8, labels, candidates, template=ZERO_SHOT_TEMPLATE):
    """Accuracy (%) of zero-shot CLIP classification among ``candidates`` (labels)."""
    import clip

    model.eval()
    tokens = clip.tokenize([template.format(CLASSNAMES[c]) for c in candidates])
    text = F.normalize(model.encode_text(tokens).float(), dim=-1)
    image = F.normalize(model.encode_image(normalize(images_uint8)).float(), dim=-1)
    pred = torch.tensor(candidates)[(image @ text.t()).argmax(dim=1)]
    return 100.0 * (pred == labels).float().mean().item()


def report(model, per_class=None, domains=DOMAINS):
    """Zero-shot accuracies (%) per domain: base (13-way), novel (12-way), held-out."""
    rows = []
    for d in domains:
        size = model.visual.input_resolution  # the dataset's images, rendered at that size
        b_img, b_lab = dataset_test_images(BASE, d, per_class, size=size)
        n_img, n_lab = dataset_test_images(NOVEL, d, per_class, size=size)
        h = torch.tensor([l in HELD_OUT for l in n_lab.tolist()])
        rows.append(dict(
            domain=d,
            base=zero_shot_accuracy(model, b_img, b_lab, BASE),
            novel=zero_shot_accuracy(model, n_img, n_lab, NOVEL),
            held_out=zero_shot_accuracy(model, n_img[h], n_lab[h], NOVEL),
        ))
    return rows


def print_report(rows, per_class=None):
    print("zero-shot ({!r}), toy dataset test images, {} per class and domain".format(
        ZERO_SHOT_TEMPLATE, per_class or DEFAULTS["n_test"]))
    print("{:<10} {:>10} {:>10} {:>16}".format("domain", "base", "novel", "held-out (of novel)"))
    for r in rows:
        print("{:<10} {:>9.1f}% {:>9.1f}% {:>15.1f}%".format(r["domain"], r["base"], r["novel"], r["held_out"]))
    print("chance: base {:.1f}% (1/{}), novel and held-out {:.1f}% (1/{})".format(
        100.0 / len(BASE), len(BASE), 100.0 / len(NOVEL), len(NOVEL)))
    print("held-out classes (never seen by the toy CLIP): {}".format(
        ", ".join(CLASSNAMES[l] for l in HELD_OUT)))


class CaptionBank:
    """Tokenised captions, so that each step only indexes precomputed tensors."""

    def __init__(self):
        import clip

        self.classes = torch.stack([
            clip.tokenize([t.format(c=COLOUR_NAMES[CLASS_ATTRS[l][0]], s=SHAPE_NAMES[CLASS_ATTRS[l][1]])
                           for t in CLASS_TEMPLATES]) for l in TRAIN_CLASSES])  # C x T x 77
        self.colours = torch.stack([clip.tokenize([t.format(c) for t in COLOUR_TEMPLATES])
                                    for c in COLOUR_NAMES])
        self.shapes = torch.stack([clip.tokenize([t.format(s) for t in SHAPE_TEMPLATES])
                                   for s in SHAPE_NAMES])

    @staticmethod
    def sample(bank, gen):
        pick = torch.randint(bank.shape[1], (bank.shape[0],), generator=gen)
        return bank[torch.arange(bank.shape[0]), pick]


def clip_losses(model, images, targets, bank, gen):
    """Class-caption contrastive loss and the colour / shape caption terms."""
    tokens = torch.cat([CaptionBank.sample(bank.classes, gen), CaptionBank.sample(bank.colours, gen),
                        CaptionBank.sample(bank.shapes, gen)])
    text = F.normalize(model.encode_text(tokens), dim=-1)
    image = F.normalize(model.encode_image(images), dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    n_cls, n_col = bank.classes.shape[0], bank.colours.shape[0]
    logits = scale * image @ text.t()
    cls_logits = logits[:, :n_cls]

    loss_i2t = F.cross_entropy(cls_logits, targets)
    onehot = F.one_hot(targets, n_cls).float().t()  # classes x batch
    present = onehot.sum(1) > 0
    soft = onehot[present] / onehot[present].sum(1, keepdim=True)
    loss_t2i = -(soft * F.log_softmax(cls_logits.t()[present], dim=1)).sum(1).mean()

    attrs = torch.tensor(CLASS_ATTRS)[torch.tensor(TRAIN_CLASSES)[targets]]
    loss_col = F.cross_entropy(logits[:, n_cls:n_cls + n_col], attrs[:, 0])
    loss_shape = F.cross_entropy(logits[:, n_cls + n_col:], attrs[:, 1])
    acc = (cls_logits.argmax(1) == targets).float().mean().item()
    return (loss_i2t + loss_t2i) / 2, (loss_col + loss_shape) / 2, acc


def build_toy_clip(seed, size=32):
    """The toy CLIP's architecture (``size``: image side, 32 = the shipped
    one; 64 = the 64-patch sibling used only to measure saliency)."""
    from clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(**dict(TOY_CLIP_KWARGS, image_resolution=size)).float()


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def save_fp16(model, path):
    """Save the fp16 ``state_dict`` (CLIP's own keys) atomically to ``path``."""
    sd = {k: v.detach().half().clone() for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(sd, tmp)
    os.replace(tmp, path)


def load_fp16(path):
    import clip

    return clip.model.build_model(torch.load(path, map_location="cpu")).float().eval()


def train(args, model=None):
    """Train a toy CLIP (or ``model``, any ``clip.model.CLIP`` taking ``args.size``
    px images, 32 when absent);
    return ``(model, per-step losses)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _train(args, model)
    finally:
        torch.set_num_threads(threads)


def _train(args, model):
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    size = getattr(args, "size", 32)
    images, labels = build_pool(TRAIN_CLASSES, args.pool, seed=1000 + args.seed, size=size)
    targets_all = torch.tensor([TRAIN_CLASSES.index(l) for l in labels.tolist()])
    print("rendered {} training images of {} classes in {:.0f}s".format(
        len(images), len(TRAIN_CLASSES), time.time() - t0))
    bank = CaptionBank()
    model = build_toy_clip(args.seed, size) if model is None else model
    model.train()
    opt = torch.optim.AdamW(param_groups(model, args.wd), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, args.steps // 20)

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return 0.5 * args.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    t0 = time.time()
    history = []
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = torch.randint(len(images), (args.batch_size,), generator=gen)
        batch = augment(images[idx], gen)
        loss_clip, loss_attr, acc = clip_losses(model, batch, targets_all[idx], bank, gen)
        loss = loss_clip + args.attr_weight * loss_attr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
        if step % args.print_freq == 0 or step == args.steps - 1:
            print("step {}/{} loss {:.4f} (clip {:.4f} attr {:.4f}) acc {:.1f}% lr {:.2e} time {:.0f}s".format(
                step + 1, args.steps, loss.item(), loss_clip.item(), loss_attr.item(), 100 * acc,
                lr_at(step), time.time() - t0), flush=True)
    return model, history


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train the toy CLIP on procedural toy images (CPU).")
    parser.add_argument("--out", default="clipwb/toyworld/toy_clip.pt", help="output fp16 state dict")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--wd", type=float, default=0.05)
    parser.add_argument("--attr-weight", type=float, default=0.5)
    parser.add_argument("--pool", type=int, default=120, help="training renders per class and domain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=32,
                        help="image side (32: the shipped toy CLIP; 64: the saliency "
                             "benchmark's 64-patch sibling, patch 8)")
    parser.add_argument("--print-freq", type=int, default=50)
    parser.add_argument("--eval-per-class", type=int, default=DEFAULTS["n_test"],
                        help="test images per class and domain in the printed report")
    args = parser.parse_args(argv)

    t0 = time.time()
    model, _ = train(args)
    save_fp16(model, args.out)
    size_mb = os.path.getsize(args.out) / 2 ** 20
    print("saved {} ({:.1f} MB, fp16) after {:.0f}s".format(args.out, size_mb, time.time() - t0))
    print_report(report(load_fp16(args.out), args.eval_per_class), args.eval_per_class)


if __name__ == "__main__":
    main()
