"""Packaging for scipion-em-cryounet: the CryoUNet engine (``cryounet``) and its Scipion plugin."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# The version lives in cryounet_plugin/__init__.py only; read it without importing (that needs pwem).
VERSION = re.search(
    r'^__version__\s*=\s*"([^"]+)"', (HERE / "cryounet_plugin" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="scipion-em-cryounet",
    version=VERSION,
    description="CryoUNet: U-Net particle picking for cryo-EM, with a Scipion 3 plugin",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPLv3",
    # 3.10: the configuration's types (float | None) are evaluated at run time.
    python_requires=">=3.10",
    packages=find_packages(include=["cryounet", "cryounet.*", "cryounet_plugin", "cryounet_plugin.*"]),
    include_package_data=True,
    package_data={
        "cryounet_plugin": ["protocols.conf", "*.png", "workflows/*.json"],
        "cryounet": ["weights/*/*.safetensors", "weights/*/*.json"],
    },
    install_requires=[
        # GPU sites bring their own CUDA build of torch; the README installs the CPU 2.13.0 wheel first.
        "torch>=2.1,<3",
        "numpy>=1.24,<2",
        "scipy>=1.9,<=1.10.0",
        "mrcfile>=1.4,<=1.4.3",
        "starfile>=0.5",
        "albumentations==2.0.8",
        "opencv-python-headless>=4.9,<4.12",
        "safetensors>=0.4",
        "tqdm>=4.60",
    ],
    extras_require={
        "scipion": ["scipion-pyworkflow>=3.11", "scipion-em>=3.11"],
        "test": ["pytest>=7", "hypothesis>=6", "scipion-pyworkflow>=3.11", "scipion-em>=3.11"],
    },
    entry_points={
        "console_scripts": ["cryounet = cryounet.cli:main"],
        "pyworkflow.plugin": ["cryounet_plugin = cryounet_plugin"],
    },
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering"],
)
