"""Import a model folder written by the CryoUNet command line."""
import enum
import os
import shutil

import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol

from .. import Plugin, engine
from ..constants import MODEL_FOLDER
from ..objects import CryoUNetModel
from .protocol_base import CryoUnetProtBase


class CryoUnetImportModelOutputs(enum.Enum):
    outputModel = CryoUNetModel


class CryoUnetProtImportModel(CryoUnetProtBase, EMProtocol):
    """Turn a CryoUNet model folder (from ``cryounet train`` or ``cryounet refine`` on the
    command line, or shared by a colleague) into a model usable by the pick and refine
    protocols. The folder must hold model.safetensors and config.json.
    """
    _label = "CryoUNet import model"
    _possibleOutputs = CryoUnetImportModelOutputs

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("modelFolder", params.PathParam, important=True,
                      label="Model folder",
                      help="Folder written by cryounet train/refine: model.safetensors "
                           "(weights), config.json (diameter, threshold, validation scores), "
                           "and usually history.json and validation_curve.json. Default "
                           "location of shared models: %s." % (Plugin.getModelsFolder() or
                                                               "CRYOUNET_MODELS"))
        form.addParam("samplingRate", params.FloatParam, default=0, validators=[params.GE(0)],
                      label="Training pixel size (A/px)",
                      help="Sampling rate, in Angstrom per pixel, of the micrographs the model "
                           "was trained on (the model's diameter is in their pixels). 0 = "
                           "unknown: pixel sizes cannot then be checked when picking.")
        form.addParam("copyFiles", params.BooleanParam, default=True,
                      label="Copy into the project?",
                      help="Yes: copy the folder into this run (the project stays complete if "
                           "the original moves; a training resume checkpoint is left out). "
                           "No: refer to it where it is.")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def createOutputStep(self):
        source = self.modelFolder.get().strip()
        errors = engine.checkModelFolder(source)
        if errors:
            raise ValueError("; ".join(errors))
        folder = source
        if self.copyFiles.get():
            folder = self._getExtraPath(MODEL_FOLDER)
            shutil.copytree(source, folder, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(*engine.MODEL_RESUME_FILES))
        model = CryoUNetModel.fromFolder(folder, samplingRate=self.samplingRate.get() or None)
        self._defineOutputs(outputModel=model)

    def _validate(self):
        return engine.checkModelFolder((self.modelFolder.get() or "").strip())

    def _warnings(self):
        if not self.samplingRate.get():
            return ["Without the training pixel size, picking cannot warn about micrographs "
                    "of another pixel size."]
        return []

    def _summary(self):
        if not hasattr(self, "outputModel"):
            return ["Model not imported yet."]
        summary = ["Imported %s" % self.modelFolder.get(),
                   "Model: %s" % self.outputModel.describe()]
        if os.path.exists(os.path.join(self.outputModel.getPath(), engine.REFINE_HISTORY)):
            summary.append("The model was refined with pseudo-labels.")
        return summary

    def _methods(self):
        if not hasattr(self, "outputModel"):
            return ["Model not imported yet."]
        return ["A CryoUNet model (%s) was imported." % self.outputModel.describe()]

    def _citations(self):
        return ["Ronneberger2015"]
