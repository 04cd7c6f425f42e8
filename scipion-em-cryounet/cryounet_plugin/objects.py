"""Scipion objects of the CryoUNet plugin."""
import os

import pyworkflow.object as pwobj
from pwem.objects import EMObject

from .engine import MODEL_WEIGHTS, readModelInfo


class CryoUNetModel(EMObject):
    """A trained CryoUNet network: a model folder produced by ``cryounet train``/``refine``.

    The folder holds ``model.safetensors`` (weights, never unpickled) and ``config.json``; the
    object keeps what protocols and summaries need without reading it again: the particle diameter
    the network was trained for (pixels of the training micrographs, and their sampling rate in
    Angstrom/pixel when known), the architecture, the validation precision/recall/F1 and the
    probability threshold calibrated on the validation set.
    """

    def __init__(self, path=None, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._path = pwobj.String(path)
        self._diameter = pwobj.Float()
        self._samplingRate = pwobj.Float()
        self._architecture = pwobj.String()
        self._precision = pwobj.Float()
        self._recall = pwobj.Float()
        self._f1 = pwobj.Float()
        self._threshold = pwobj.Float()
        self._thresholdTta = pwobj.Float()
        self._engineVersion = pwobj.String()

    # ---------------------------------------------------------------- accessors
    def getPath(self):
        """Model folder."""
        return self._path.get()

    def getWeightsFile(self):
        return os.path.join(self.getPath(), MODEL_WEIGHTS)

    def getDiameter(self):
        """Particle diameter in pixels of the training micrographs."""
        return self._diameter.get()

    def setDiameter(self, value):
        self._diameter.set(value)

    def getSamplingRate(self):
        """Sampling rate (Angstrom/pixel) of the training micrographs, or None when unknown."""
        value = self._samplingRate.get()
        return value if value else None

    def setSamplingRate(self, value):
        self._samplingRate.set(value)

    def getDiameterAngstrom(self):
        sampling = self.getSamplingRate()
        diameter = self.getDiameter()
        return diameter * sampling if sampling and diameter else None

    def getArchitecture(self):
        return self._architecture.get()

    def setArchitecture(self, value):
        self._architecture.set(value)

    def getPrecision(self):
        return self._precision.get()

    def getRecall(self):
        return self._recall.get()

    def getF1(self):
        return self._f1.get()

    def setValidation(self, precision, recall, f1):
        self._precision.set(precision)
        self._recall.set(recall)
        self._f1.set(f1)

    def getThreshold(self):
        """Probability threshold calibrated on the validation set."""
        return self._threshold.get()

    def setThreshold(self, value):
        self._threshold.set(value)

    def getThresholdTta(self):
        """Threshold calibrated on the validation set with test-time augmentation (None for
        models trained before it was calibrated)."""
        return self._thresholdTta.get()

    def setThresholdTta(self, value):
        self._thresholdTta.set(value)

    def getEngineVersion(self):
        return self._engineVersion.get()

    def setEngineVersion(self, value):
        self._engineVersion.set(value)

    @classmethod
    def fromFolder(cls, folder, samplingRate=None):
        """The model written in ``folder``, described by its ``config.json``.

        Raises:
            ValueError: the folder's configuration cannot be read (the engine's message).
        """
        model = cls(path=folder)
        model.setFromInfo(readModelInfo(folder), samplingRate=samplingRate)
        return model

    def setFromInfo(self, info, samplingRate=None):
        """Fill the attributes from :func:`cryounet_plugin.engine.readModelInfo`."""
        self.setDiameter(info["diameter"])
        self.setArchitecture(info.get("architecture"))
        self.setValidation(info.get("precision"), info.get("recall"), info.get("f1"))
        self.setThreshold(info.get("threshold"))
        self.setThresholdTta(info.get("threshold_tta"))
        self.setEngineVersion(info.get("version"))
        if samplingRate:
            self.setSamplingRate(samplingRate)

    def getFiles(self):
        return {self.getPath()}

    def describe(self):
        """One line: architecture, diameter, validation scores and threshold."""
        parts = ["%s, diameter %.1f px" % (self.getArchitecture() or "unknown architecture",
                                           self.getDiameter() or 0)]
        if self.getDiameterAngstrom():
            parts.append("(%.0f A)" % self.getDiameterAngstrom())
        if self.getF1() is not None:
            parts.append("validation precision %.3f, recall %.3f, F1 %.3f"
                         % (self.getPrecision() or 0, self.getRecall() or 0, self.getF1()))
        if self.getThreshold() is not None:
            parts.append("threshold %.3f" % self.getThreshold())
        if self.getEngineVersion():
            parts.append("CryoUNet %s" % self.getEngineVersion())
        return ", ".join(parts)

    def __str__(self):
        return "CryoUNetModel(%s)" % self.describe()
