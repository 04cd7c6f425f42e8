"""Wizard of the pick protocol's 'Model name': choose a model of the site's CRYOUNET_MODELS folder."""
from pyworkflow.wizard import Wizard

from .. import Plugin, engine
from ..protocols import CryoUnetProtPick


def libraryModelChoices(root):
    """``(names, message)``: the usable models in ``root`` and, when there are none, why."""
    names = engine.listModelFolders(root)
    if names:
        return names, None
    return [], ("The models folder %s (CRYOUNET_MODELS) holds no usable CryoUNet model. Put model "
                "folders there (model.safetensors + config.json, as cryounet train writes them), "
                "or set CRYOUNET_MODELS in Scipion's configuration." % (root or "(not set)"))


class CryoUnetLibraryModelWizard(Wizard):
    """List the usable models of the CRYOUNET_MODELS folder and fill 'Model name' with the one
    chosen (directly when there is only one)."""
    _targets = [(CryoUnetProtPick, ["libraryModel"])]

    def show(self, form, *params):
        names, message = libraryModelChoices(Plugin.getModelsFolder())
        if message:
            form.showWarning(message)
            return
        if len(names) == 1:
            form.setVar("libraryModel", names[0])
            return
        # Tk is imported only when a dialog is really shown (the choice logic above needs none).
        from pyworkflow.gui.dialog import ListDialog
        from pyworkflow.gui.tree import ListTreeProviderString
        from pyworkflow.object import String
        provider = ListTreeProviderString([String(name) for name in names])
        dialog = ListDialog(form.root, "CryoUNet models in %s" % Plugin.getModelsFolder(), provider,
                            selectmode="browse")
        if dialog.resultYes() and dialog.values:
            form.setVar("libraryModel", dialog.values[0].get())
