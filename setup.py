"""Install the package ``clipwb`` (DiSa, ISP, GuiDG and the baselines as a Dassl plugin).

One package with a name of its own, importable from any directory, so that it
never collides with a CoOp-family checkout's ``trainers`` / ``datasets`` /
``clip`` (nor with Hugging Face ``datasets``). This repository keeps the
CoOp-family face: its top-level ``trainers/`` and ``datasets/`` folders are
installed as ``clipwb.trainers`` and ``clipwb.datasets`` (``package_dir``),
and ``configs/`` ships inside the package for ``python -m clipwb.dropin``.
See docs/ARCHITECTURE.md.
"""
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
# package name prefix -> folder of this repository
ROOTS = {"clipwb": "clipwb", "clipwb.trainers": "trainers", "clipwb.datasets": "datasets"}


def packages_under(name, folder):
    found = {}
    for dirpath, dirnames, filenames in os.walk(os.path.join(HERE, folder)):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        if "__init__.py" in filenames:
            rel = os.path.relpath(dirpath, os.path.join(HERE, folder))
            sub = "" if rel == "." else "." + rel.replace(os.sep, ".")
            found[name + sub] = os.path.relpath(dirpath, HERE).replace(os.sep, "/")
    return found


PACKAGE_DIR = {}
for _name, _folder in ROOTS.items():
    for _pkg, _path in packages_under(_name, _folder).items():
        if _pkg not in PACKAGE_DIR:
            PACKAGE_DIR[_pkg] = _path
# configs/ travels as package data (YAML only)
PACKAGE_DIR["clipwb.configs"] = "configs"

setup(
    name="clip-prompt-workbench",
    version="0.2.0",
    description="DiSa, ISP, GuiDG and the CoOp-family baselines as a Dassl plugin (CLIP prompt learning)",
    python_requires=">=3.9",
    packages=sorted(PACKAGE_DIR),
    package_dir=PACKAGE_DIR,
    package_data={
        "clipwb.toyworld": ["toy_clip.pt", "README.md"],
        "clipwb.configs": ["datasets/*.yaml", "trainers/*/*.yaml"],
    },
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        # openai-clip imports pkg_resources, which setuptools 81 removed
        "setuptools<81",
        "openai-clip==1.0.1",
        "ftfy",
        "regex",
        "yacs",
        "tabulate",
        "gdown",
        "tqdm",
        "tensorboard",
        "matplotlib",
        "scipy",
        "numpy",
        "Pillow",
        # the grid runner (scripts/grid.py): local and Slurm job arrays
        "submitit>=1.5",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout"]},
)
