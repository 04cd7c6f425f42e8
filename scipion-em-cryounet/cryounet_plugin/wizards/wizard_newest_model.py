"""Wizard of the pick protocol's 'Input models': add the newest trained CryoUNet models of the
project (every member of that run's ensemble)."""
from pyworkflow.wizard import Wizard

from ..protocols import CryoUnetProtPick
from ..protocols.pick_models import newestModelRun


class CryoUnetNewestModelWizard(Wizard):
    """Fill 'Input models' with the models of the train, refine or import-model run of this
    project that finished last, saying which run that is."""
    _targets = [(CryoUnetProtPick, ["inputModels"])]

    def show(self, form, *params):
        run, pointers = newestModelRun(form.protocol.getProject())
        if run is None:
            form.showWarning("This project has no finished run with CryoUNet models yet: train one "
                             "(CryoUNet train), import one (CryoUNet import model), or pick with "
                             "the general model ('Models' = general model).")
            return
        form.setVar("inputModels", pointers)
        form.showInfo("Added the %d model(s) of run '%s', the newest with CryoUNet models."
                      % (len(pointers), run.getRunName()))
