"""CryoUNet protocols (collected by the Scipion Domain from this module)."""
from .protocol_base import CryoUnetProtBase
from .protocol_import_coordinates import CryoUnetProtImportCoordinates
from .protocol_import_model import CryoUnetProtImportModel
from .protocol_pick import CryoUnetProtPick
from .protocol_postprocess import CryoUnetProtPostprocess
from .protocol_refine import CryoUnetProtRefine
from .protocol_train import CryoUnetProtTrain

__all__ = ["CryoUnetProtBase", "CryoUnetProtImportCoordinates", "CryoUnetProtImportModel",
           "CryoUnetProtPick", "CryoUnetProtPostprocess", "CryoUnetProtRefine",
           "CryoUnetProtTrain"]
