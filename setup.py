"""Packaging for ``cryounet``, the CryoUNet engine (the Scipion plugin is ``scipion-em-cryounet/``).

The base install holds what the Scipion plugin reads in Scipion's own environment (configuration,
file rules, MRC/STAR/model-folder I/O) and needs no PyTorch. ``cryounet[engine]`` adds what training
and picking need. PyTorch is in that extra as a range, so a site installs its own build (the CPU
wheel, or a CUDA build) first and pip keeps it.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# The version lives in cryounet/__init__.py only; read it as text (importing is not needed).
VERSION = re.search(
    r'^__version__\s*=\s*"([^"]+)"', (HERE / "cryounet" / "__init__.py").read_text(), re.M
).group(1)

ENGINE = [
    "torch>=2.1,<3",
    "albumentations==2.0.8",
    "opencv-python-headless>=4.9,<4.12",
    "tqdm>=4.60",
    # model.onnx: written by training (the exporter needs onnx), run by the CPU picker.
    "onnx>=1.16,<1.18",
    "onnxruntime>=1.17,<1.21",
]
SCIPION = ["scipion-pyworkflow>=3.11", "scipion-em>=3.11"]

setup(
    name="cryounet",
    version=VERSION,
    description="CryoUNet: U-Net particle picking for cryo-EM micrographs (engine and command line)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    license_files=["LICENSE"],
    url="https://github.com/cryounet/cryounet",
    project_urls={
        "Source": "https://github.com/cryounet/cryounet",
        "Issues": "https://github.com/cryounet/cryounet/issues",
    },
    # 3.10: the configuration's types (float | None) are evaluated at run time.
    python_requires=">=3.10",
    packages=find_packages(include=["cryounet", "cryounet.*"]),
    include_package_data=True,
    package_data={"cryounet": ["weights/*/*.safetensors", "weights/*/*.onnx", "weights/*/*.json", "weights/README*"]},
    install_requires=[
        # Scipion's pins: numpy 1.26.1, scipy <= 1.10.0, mrcfile <= 1.4.3.
        "numpy>=1.24,<2",
        "scipy>=1.9,<=1.10.0",
        "mrcfile>=1.4,<=1.4.3",
        "starfile>=0.5",
        "safetensors>=0.4",
    ],
    extras_require={
        "engine": ENGINE,
        # Scipion plugin tests need the plugin too: pip install -e ./scipion-em-cryounet
        "test": ENGINE + SCIPION + ["pytest>=7", "hypothesis>=6"],
        # The documentation site (docs/): Sphinx with Markdown pages, as Scipion's documentation.
        "docs": ["sphinx>=7,<9", "myst-parser>=2,<6", "furo>=2024.1"],
    },
    entry_points={"console_scripts": ["cryounet = cryounet.__main__:run"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
