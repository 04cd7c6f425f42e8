"""CryoUNet viewers (collected by the Scipion Domain from this module)."""
from .viewer_cryounet import CryoUnetModelViewer, CryoUnetPicksViewer, CryoUnetTrainingViewer

__all__ = ["CryoUnetModelViewer", "CryoUnetPicksViewer", "CryoUnetTrainingViewer"]
