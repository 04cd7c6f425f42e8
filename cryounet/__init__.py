"""CryoUNet engine: deep-learning particle picking for cryo-EM micrographs.

The engine is pure PyTorch/numpy and never imports Scipion. Importing this package is cheap
(no torch import); the heavy modules are imported where they are used.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("scipion-em-cryounet")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
