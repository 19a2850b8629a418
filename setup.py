"""Install the dependencies of the prompt-learning workbench.

The code runs from the repository root, as in every CoOp-family repository
(``python train.py ...``), so this file installs no top-level package: a
top-level ``datasets`` package would shadow Hugging Face ``datasets``.
"""
from setuptools import setup

setup(
    name="clip-prompt-workbench",
    version="0.1.0",
    description="CoOp-compatible CLIP prompt-learning workbench: DiSa, ISP, GuiDG and six baselines",
    python_requires=">=3.9",
    packages=[],
    py_modules=[],
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
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout"]},
)
