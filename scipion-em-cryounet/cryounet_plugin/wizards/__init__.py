"""CryoUNet wizards (collected by the Scipion Domain from this module)."""
from .wizard_diameter import CryoUnetDiameterWizard
from .wizard_library_model import CryoUnetLibraryModelWizard
from .wizard_newest_model import CryoUnetNewestModelWizard
from .wizard_threshold import CryoUnetThresholdWizard

__all__ = ["CryoUnetDiameterWizard", "CryoUnetLibraryModelWizard", "CryoUnetNewestModelWizard",
           "CryoUnetThresholdWizard"]
