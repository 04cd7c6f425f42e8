"""Where the pick protocol's models come from: a model folder (the general model, the site's
CRYOUNET_MODELS library) described as a CryoUNetModel, and the newest trained models of a project
(what the pick form offers)."""
import os

from pyworkflow.object import Pointer

from .. import Plugin, engine
from ..objects import CryoUNetModel


def modelFromFolder(folder, label):
    """A CryoUNetModel (not stored in the project) describing the model folder ``folder``."""
    errors = engine.checkModelFolder(folder)
    if errors:
        raise ValueError("; ".join(errors))
    model = CryoUNetModel.fromFolder(folder)
    model.setObjLabel(label)
    return model


def modelFromLibrary(name):
    """The model called ``name`` in the CRYOUNET_MODELS folder.

    Raises:
        ValueError: no name, or no usable model of that name (the message lists the usable ones).
    """
    root = Plugin.getModelsFolder()
    available = engine.listModelFolders(root)
    if not name or name not in available:
        raise ValueError("%s: there is no model %r in the models folder %s (CRYOUNET_MODELS). "
                         "Usable models there: %s." % ("Model name", name or "", root,
                                                       ", ".join(available) or "none"))
    return modelFromFolder(os.path.join(root, name), name)


def newestModelRun(project):
    """``(run, [pointer to each of its CryoUNet models])`` of the project's finished run with
    CryoUNet model outputs (train, refine, import model) that ended last, or ``(None, [])``."""
    newest, newestKey = (None, []), None
    for run in project.getRuns() if project is not None else []:
        if not run.isFinished():
            continue
        names = [name for name, output in run.iterOutputAttributes() if isinstance(output, CryoUNetModel)]
        key = (str(run.endTime.get() or ""), run.getObjId())
        if names and (newestKey is None or key > newestKey):
            newest, newestKey = (run, [Pointer(run, extended=name) for name in sorted(names)]), key
    return newest
