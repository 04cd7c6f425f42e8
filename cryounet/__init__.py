"""CryoUNet engine: deep-learning particle picking for cryo-EM micrographs.

The engine is pure PyTorch/numpy and never imports Scipion. Importing this package is cheap
(no torch import); the heavy modules are imported where they are used.
"""
#: Version of the engine; the Scipion plugin (scipion-em-cryounet/) is released with the same number
#: and requires exactly this engine version.
__version__ = "0.4.0"
