"""U-Net family models behind a name -> class registry (:mod:`cryounet.models.registry`)."""
from cryounet.models.registry import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "build_model"]
