"""Tiny versions of the 15 CoOp-family datasets, written in their real layouts.

``write_dataset(root, "Caltech101")`` (or the config name, ``"caltech101"``)
writes ``root/caltech-101/101_ObjectCategories/<class>/image_0001.jpg ...`` and
``root/caltech-101/split_zhou_Caltech101.json`` exactly as the real download
looks, so ``train.py --root root --dataset-config-file
configs/datasets/caltech101.yaml`` runs on it. Images are small JPEGs: one colour
per class, a stripe pattern per image, a little seeded noise.

The returned :class:`WrittenDataset` tells a test what to expect: the class
names in label order, the images per class in each split, the config file.
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# DATASET.NAME -> configs/datasets/<name>.yaml
CONFIG_NAMES = {
    "Caltech101": "caltech101", "OxfordPets": "oxford_pets", "StanfordCars": "stanford_cars",
    "OxfordFlowers": "oxford_flowers", "Food101": "food101", "FGVCAircraft": "fgvc_aircraft",
    "SUN397": "sun397", "DescribableTextures": "dtd", "EuroSAT": "eurosat", "UCF101": "ucf101",
    "ImageNet": "imagenet", "ImageNetV2": "imagenetv2", "ImageNetSketch": "imagenet_sketch",
    "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r",
}
ALL_DATASETS = tuple(CONFIG_NAMES)
TEST_ONLY = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")

# Real first classes of each dataset (beyond them, synthetic ones are made up).
CALTECH_FOLDERS = ["Faces", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor",
                   "ant", "barrel", "bass", "beaver"]
CALTECH_NAMES = {"Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike",
                 "airplanes": "airplane"}
PET_BREEDS = ["Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound",
              "beagle", "Bengal", "Birman", "Bombay"]
CAR_MODELS = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012",
              "Acura TL Type-S 2008", "Acura TSX Sedan 2012", "Acura Integra Type R 2001",
              "Acura ZDX Hatchback 2012", "Aston Martin V8 Vantage Convertible 2012"]
FLOWERS = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea",
           "english marigold", "tiger lily", "moon orchid", "bird of paradise"]
FOODS = ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare",
         "beet_salad", "beignets", "bibimbap"]
AIRCRAFT = ["707-320", "727-200", "737-200", "Cessna 172", "A300B4", "DC-10", "F-16A/B",
            "Boeing 717"]
SUN_CLASSES = ["a/abbey", "a/airplane_cabin", "a/airport_terminal", "a/apartment_building/outdoor",
               "a/alley", "a/amphitheater", "b/bakery/shop", "b/bedroom"]
TEXTURES = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked"]
EUROSAT_FOLDERS = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
                   "Pasture", "PermanentCrop", "Residential", "River", "SeaLake"]
EUROSAT_NAMES = {"AnnualCrop": "Annual Crop Land", "HerbaceousVegetation": "Herbaceous Vegetation Land",
                 "Highway": "Highway or Road", "Industrial": "Industrial Buildings",
                 "Pasture": "Pasture Land", "PermanentCrop": "Permanent Crop Land",
                 "Residential": "Residential Buildings", "SeaLake": "Sea or Lake"}
UCF_ACTIONS = ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Baby_Crawling", "Balance_Beam",
               "Band_Marching", "Baseball_Pitch", "Basketball"]
IMAGENET_CLASSES = [("n01440764", "tench"), ("n01443537", "goldfish"),
                    ("n01484850", "great white shark"), ("n01491361", "tiger shark"),
                    ("n01494475", "hammerhead shark"), ("n01496331", "electric ray"),
                    ("n01498041", "stingray"), ("n01514668", "rooster"), ("n01514859", "hen"),
                    ("n01518878", "ostrich")]


@dataclass
class WrittenDataset:
    """What ``write_dataset`` wrote, for the test to check against."""

    name: str                 # DATASET.NAME
    config_file: str          # configs/datasets/<name>.yaml, relative to the repo root
    root: str                 # the DATA root (pass as --root / DATASET.ROOT)
    dataset_dir: str          # root/<dataset folder>
    classnames: list          # class names in label order
    counts: dict              # images per class: {"train": n, "val": n or None, "test": n}
    images: list = field(default_factory=list)  # every image the dataset reads
    split_file: str = ""      # the split file the reader needs ("" if none)

    @property
    def num_classes(self):
        return len(self.classnames)


def canonical_name(name):
    """``DATASET.NAME`` for a DATASET.NAME or config name, any case."""
    for dname, cname in CONFIG_NAMES.items():
        if name.lower() in (dname.lower(), cname):
            return dname
    raise ValueError("Unknown dataset {!r}; use one of {}".format(name, ", ".join(ALL_DATASETS)))


def write_image(path, label, index, image_size=32, seed=0):
    """A small JPEG: class colour, an image-specific stripe pattern, seeded noise."""
    rng = np.random.default_rng([seed, label, index])
    hue = (label * 0.61803398875) % 1.0
    base = np.array([0.5 + 0.5 * np.cos(2 * np.pi * (hue + k / 3.0)) for k in range(3)]) * 255
    img = np.tile(base, (image_size, image_size, 1))
    period = 2 + index % 5
    stripes = (np.arange(image_size) // period) % 2
    img[stripes == 1, :, :] *= 0.75
    img += rng.normal(0, 6, img.shape)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=90)
    return path


def write_corrupt_image(path):
    """Write a file with an image name that no decoder can read; return the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"this is not a JPEG file\x00\xff\x00")
    return path


def corrupt_one_image(written):
    """Overwrite the first image of a written dataset with garbage; return its path."""
    return write_corrupt_image(written.images[0])


def _split_counts(n_per_class):
    if n_per_class < 3:
        raise ValueError("n_per_class must be >= 3 (one image each for train, val and test)")
    n_val = max(1, round(n_per_class * 0.2))
    n_test = max(1, round(n_per_class * 0.3))
    return n_per_class - n_val - n_test, n_val, n_test


def _names(known, n, make):
    return [known[i] if i < len(known) else make(i) for i in range(n)]


def _write_json(obj, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=4)


def _write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


class _Writer:
    """Writes one dataset; ``per_class`` lists (relative image path) per class."""

    def __init__(self, root, name, n_classes, n_per_class, image_size, seed, folder):
        self.root, self.name = os.path.abspath(str(root)), name
        self.n_classes, self.n_per_class = n_classes, n_per_class
        self.image_size, self.seed = image_size, seed
        self.dataset_dir = os.path.join(self.root, folder)
        self.images = []

    def image(self, relpath, label, index, base=None):
        path = os.path.join(base or self.dataset_dir, relpath)
        self.images.append(write_image(path, label, index, self.image_size, self.seed))
        return path

    def split_json(self, fname, per_class, classnames, image_base, counts):
        """Write images of ``per_class`` (relative to ``image_base``) and the split JSON."""
        n_train, n_val, _ = counts
        split = {"train": [], "val": [], "test": []}
        for label, relpaths in enumerate(per_class):
            for i, rel in enumerate(relpaths):
                self.image(rel, label, i, base=image_base)
                key = "train" if i < n_train else "val" if i < n_train + n_val else "test"
                split[key].append([rel, label, classnames[label]])
        path = os.path.join(self.dataset_dir, fname)
        _write_json(split, path)
        return path

    def result(self, classnames, counts, split_file="", test_only=False):
        n_train, n_val, n_test = counts
        if test_only:
            per = {"train": self.n_per_class, "val": None, "test": self.n_per_class}
        else:
            per = {"train": n_train, "val": n_val, "test": n_test}
        return WrittenDataset(self.name, "configs/datasets/{}.yaml".format(CONFIG_NAMES[self.name]),
                              self.root, self.dataset_dir, list(classnames), per,
                              self.images, split_file)


def _folder_split(w, image_subdir, folders, classnames, fname, filename, counts):
    per_class = [["{}/{}".format(folder, filename(folder, i)) for i in range(w.n_per_class)]
                 for folder in folders]
    return w.split_json(fname, per_class, classnames,
                        os.path.join(w.dataset_dir, image_subdir), counts)


def _caltech101(w, counts):
    folders = _names(CALTECH_FOLDERS, w.n_classes, lambda i: "object_{:03d}".format(i))
    folders = sorted(folders)
    names = [CALTECH_NAMES.get(f, f) for f in folders]
    image_dir = os.path.join(w.dataset_dir, "101_ObjectCategories")
    for extra in ("BACKGROUND_Google", "Faces_easy"):  # present in the archive, never used
        for i in range(2):
            write_image(os.path.join(image_dir, extra, "image_{:04d}.jpg".format(i + 1)),
                        99, i, w.image_size, w.seed)
    split = _folder_split(w, "101_ObjectCategories", folders, names, "split_zhou_Caltech101.json",
                          lambda f, i: "image_{:04d}.jpg".format(i + 1), counts)
    return w.result(names, counts, split)


def _oxford_pets(w, counts):
    breeds = _names(PET_BREEDS, w.n_classes, lambda i: "breed_{:02d}".format(i))
    per_class = [["{}_{}.jpg".format(b, i + 1) for i in range(w.n_per_class)] for b in breeds]
    names = [b.lower() for b in breeds]
    split = w.split_json("split_zhou_OxfordPets.json", per_class, names,
                         os.path.join(w.dataset_dir, "images"), counts)
    trainval, test = [], []
    species_count = {1: 0, 2: 0}
    n_trainval = counts[0] + counts[1]
    for label, b in enumerate(breeds):
        species = 1 if b[0].isupper() else 2  # cat breeds are capitalised in Pets
        species_count[species] += 1
        for i in range(w.n_per_class):
            line = "{}_{} {} {} {}".format(b, i + 1, label + 1, species, species_count[species])
            (trainval if i < n_trainval else test).append(line)
    _write_lines(os.path.join(w.dataset_dir, "annotations", "trainval.txt"), trainval)
    _write_lines(os.path.join(w.dataset_dir, "annotations", "test.txt"), test)
    return w.result(names, counts, split)


def _stanford_cars(w, counts):
    from scipy.io import savemat

    models = _names(CAR_MODELS, w.n_classes, lambda i: "Car Model {} 2012".format(i))
    names = [" ".join([m.split(" ")[-1]] + m.split(" ")[:-1]) for m in models]  # year first
    n_trainval = counts[0] + counts[1]
    per_class, k_train, k_test = [], 0, 0
    for _ in models:
        rels = []
        for i in range(w.n_per_class):
            if i < n_trainval:
                k_train += 1
                rels.append("cars_train/{:05d}.jpg".format(k_train))
            else:
                k_test += 1
                rels.append("cars_test/{:05d}.jpg".format(k_test))
        per_class.append(rels)
    split = w.split_json("split_zhou_StanfordCars.json", per_class, names, w.dataset_dir, counts)
    meta = np.empty((1, len(models)), dtype=object)
    for i, m in enumerate(models):
        meta[0, i] = m
    os.makedirs(os.path.join(w.dataset_dir, "devkit"), exist_ok=True)
    savemat(os.path.join(w.dataset_dir, "devkit", "cars_meta.mat"), {"class_names": meta})
    return w.result(names, counts, split)


def _oxford_flowers(w, counts):
    from scipy.io import savemat

    names = _names(FLOWERS, w.n_classes, lambda i: "flower {}".format(i))
    # Images are numbered over the whole set, classes interleaved as in the archive.
    per_class = [[] for _ in names]
    labels = []
    for k in range(w.n_classes * w.n_per_class):
        label = k % w.n_classes
        per_class[label].append("image_{:05d}.jpg".format(k + 1))
        labels.append(label + 1)
    split = w.split_json("split_zhou_OxfordFlowers.json", per_class, names,
                         os.path.join(w.dataset_dir, "jpg"), counts)
    savemat(os.path.join(w.dataset_dir, "imagelabels.mat"),
            {"labels": np.array([labels], dtype=np.uint8)})
    _write_json({str(i + 1): n for i, n in enumerate(names)},
                os.path.join(w.dataset_dir, "cat_to_name.json"))
    return w.result(names, counts, split)


def _food101(w, counts):
    foods = _names(FOODS, w.n_classes, lambda i: "dish_{:03d}".format(i))
    split = _folder_split(w, "images", foods, foods, "split_zhou_Food101.json",
                          lambda f, i: "{}.jpg".format(100000 + 37 * i), counts)
    _write_lines(os.path.join(w.dataset_dir, "meta", "classes.txt"), foods)
    return w.result(foods, counts, split)


def _fgvc_aircraft(w, counts):
    names = _names(AIRCRAFT, w.n_classes, lambda i: "Variant {}".format(i))
    n_train, n_val, _ = counts
    lines = {"train": [], "val": [], "test": []}
    k = 0
    for label, name in enumerate(names):
        for i in range(w.n_per_class):
            k += 1
            image_id = "{:07d}".format(1000000 + 13 * k)
            w.image(os.path.join("images", image_id + ".jpg"), label, i)
            key = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            lines[key].append("{} {}".format(image_id, name))
    _write_lines(os.path.join(w.dataset_dir, "variants.txt"), names)
    for key, rows in lines.items():
        _write_lines(os.path.join(w.dataset_dir, "images_variant_{}.txt".format(key)), rows)
    return w.result(names, counts, os.path.join(w.dataset_dir, "images_variant_train.txt"))


def _sun397(w, counts):
    classes = _names(SUN_CLASSES, w.n_classes, lambda i: "z/zone_{:03d}".format(i))
    names = [" ".join(c.split("/")[1:][::-1]) for c in classes]  # qualifier first
    split = _folder_split(w, "SUN397", classes, names, "split_zhou_SUN397.json",
                          lambda c, i: "sun_{}{:04d}.jpg".format(c.split("/")[1][:4], i), counts)
    _write_lines(os.path.join(w.dataset_dir, "ClassName.txt"), ["/" + c for c in classes])
    return w.result(names, counts, split)


def _dtd(w, counts):
    textures = _names(TEXTURES, w.n_classes, lambda i: "texture{:02d}".format(i))
    split = _folder_split(w, "images", textures, textures, "split_zhou_DescribableTextures.json",
                          lambda t, i: "{}_{:04d}.jpg".format(t, i + 1), counts)
    for sub in ("imdb", "labels"):
        os.makedirs(os.path.join(w.dataset_dir, sub), exist_ok=True)
    return w.result(textures, counts, split)


def _eurosat(w, counts):
    folders = _names(EUROSAT_FOLDERS, w.n_classes, lambda i: "LandUse{:02d}".format(i))
    names = [EUROSAT_NAMES.get(f, f) for f in folders]
    split = _folder_split(w, "2750", folders, names, "split_zhou_EuroSAT.json",
                          lambda f, i: "{}_{}.jpg".format(f, i + 1), counts)
    return w.result(names, counts, split)


def _ucf101(w, counts):
    actions = _names(UCF_ACTIONS, w.n_classes, lambda i: "Action_{:03d}".format(i))
    split = _folder_split(w, "UCF-101-midframes", actions, actions, "split_zhou_UCF101.json",
                          lambda a, i: "v_{}_g{:02d}_c01.jpg".format(a.replace("_", ""), i + 1),
                          counts)
    return w.result(actions, counts, split)


def _imagenet_classes(n):
    return _names(IMAGENET_CLASSES, n, lambda i: ("n9{:07d}".format(i), "object {}".format(i)))


def _write_classnames(w, classes):
    _write_lines(os.path.join(w.dataset_dir, "classnames.txt"),
                 ["{} {}".format(wnid, name) for wnid, name in classes])


def _imagenet(w, counts):
    classes = _imagenet_classes(w.n_classes)
    n_trainval = counts[0] + counts[1]
    for label, (wnid, _) in enumerate(classes):
        for i in range(w.n_per_class):
            sub = "train" if i < n_trainval else "val"
            w.image(os.path.join("images", sub, wnid, "{}_{}.JPEG".format(wnid, i + 1)), label, i)
    _write_classnames(w, classes)
    out = w.result([name for _, name in classes], counts,
                   os.path.join(w.dataset_dir, "classnames.txt"))
    n_test = w.n_per_class - n_trainval
    out.counts = {"train": n_trainval, "val": n_test, "test": n_test}  # val is the test set
    return out


def _imagenet_variant(image_subdir, subset, ext):
    def write(w, counts):
        # A and R hold a subset of the classes: every other class of classnames.txt.
        classes = _imagenet_classes(2 * w.n_classes if subset else w.n_classes)
        used = classes[::2] if subset else classes
        for label, (wnid, _) in enumerate(used):
            for i in range(w.n_per_class):
                w.image(os.path.join(image_subdir, wnid, "{}_{}.{}".format(wnid, i + 1, ext)),
                        label, i)
        if subset:
            _write_lines(os.path.join(w.dataset_dir, image_subdir, "README.txt"),
                         ["Class folders are named by ImageNet wnid."])
        _write_classnames(w, classes)
        return w.result([name for _, name in used], counts,
                        os.path.join(w.dataset_dir, "classnames.txt"), test_only=True)
    return write


def _imagenetv2(w, counts):
    classes = _imagenet_classes(w.n_classes)
    sub = "imagenetv2-matched-frequency-format-val"
    for label in range(w.n_classes):
        for i in range(w.n_per_class):
            w.image(os.path.join(sub, str(label), "{:040x}.jpeg".format(1 + label * 1000 + i)),
                    label, i)
    _write_classnames(w, classes)
    return w.result([name for _, name in classes], counts,
                    os.path.join(w.dataset_dir, "classnames.txt"), test_only=True)


_WRITERS = {
    "Caltech101": ("caltech-101", _caltech101),
    "OxfordPets": ("oxford_pets", _oxford_pets),
    "StanfordCars": ("stanford_cars", _stanford_cars),
    "OxfordFlowers": ("oxford_flowers", _oxford_flowers),
    "Food101": ("food-101", _food101),
    "FGVCAircraft": ("fgvc_aircraft", _fgvc_aircraft),
    "SUN397": ("sun397", _sun397),
    "DescribableTextures": ("dtd", _dtd),
    "EuroSAT": ("eurosat", _eurosat),
    "UCF101": ("ucf101", _ucf101),
    "ImageNet": ("imagenet", _imagenet),
    "ImageNetV2": ("imagenetv2", _imagenetv2),
    "ImageNetSketch": ("imagenet-sketch", _imagenet_variant("images", False, "JPEG")),
    "ImageNetA": ("imagenet-adversarial", _imagenet_variant("imagenet-a", True, "jpg")),
    "ImageNetR": ("imagenet-rendition", _imagenet_variant("imagenet-r", True, "jpg")),
}


def write_dataset(root, name, n_classes=4, n_per_class=8, image_size=32, seed=0):
    """Write a tiny ``name`` dataset under the DATA folder ``root``; return a WrittenDataset.

    ``n_per_class`` images per class are split 50/20/30 into train/val/test
    (8 -> 4/2/2); test-only datasets (ImageNet V2/Sketch/A/R) use all of them
    as the test set; ImageNet's train folder holds train+val, its val folder
    the test images.
    """
    name = canonical_name(name)
    folder, writer = _WRITERS[name]
    counts = _split_counts(n_per_class)
    return writer(_Writer(root, name, n_classes, n_per_class, image_size, seed, folder), counts)


# ------------------------------------------------------------ your own images

def write_image_folder(folder, n_classes=6, n_per_class=10, layout="classes", size=32,
                       domain="plain"):
    """A user's image folder (``DATASET.NAME ImageFolder``) of toy-world classes.

    ``layout``: ``"classes"`` (``folder/<class>/img_NNN.png``), ``"splits"``
    (``folder/{train,test}/<class>/...``, ``n_per_class`` in each) or ``"csv"``
    (``folder/images/NNNN.png`` and ``folder/labels.csv`` of ``path,label``).
    Folder names are the toy CLIP's class names with underscores (``red_circle``),
    so the toy CLIP classifies them. Returns ``{folder name: [image paths]}``.
    """
    from clipwb.toyworld.render import CLASSNAMES, render

    written = {}
    rows = ["path,label"]
    for label in range(n_classes):
        key = CLASSNAMES[label].replace(" ", "_")
        parts = ("train", "test") if layout == "splits" else ("",)
        for p, part in enumerate(parts):
            for index in range(n_per_class):
                if layout == "csv":
                    rel = "images/{:02d}_{:03d}.png".format(label, index)
                    rows.append("{},{}".format(rel, key))
                else:
                    rel = os.path.join(part, key, "img_{:03d}.png".format(index))
                path = os.path.join(folder, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                render(label, domain, index + 1000 * p, seed=7, size=size).save(path)
                written.setdefault(key, []).append(path)
    if layout == "csv":
        _write_lines(os.path.join(folder, "labels.csv"), rows)
    return written
