"""What the pick form sends to the engine: its models (trained or imported, the general model,
the models folder), the particle diameter and box, the threshold and the pick configuration (a
mixin of :class:`CryoUnetProtPick`)."""
import glob

from .. import engine
from ..constants import MODELS_GENERAL, MODELS_INPUT, MODELS_LIBRARY, THRESHOLD_AUTO
from ..convert import nmsFraction
from .pick_models import modelFromFolder, modelFromLibrary, newestModelRun
from .sets import boxSizeForDiameter


class PickSettings:
    """Engine settings of the pick protocol, from its form (mixed in before the base class)."""

    def _getModels(self):
        """The models picking uses, as CryoUNetModel objects (built from the folder for the general
        model and the models folder).

        Raises:
            ValueError: the general model or the named library model is not there.
        """
        source = self.modelSource.get()
        if source == MODELS_GENERAL:
            return [modelFromFolder(engine.generalModelFolder(), "general model")]
        if source == MODELS_LIBRARY:
            return [modelFromLibrary(self.libraryModel.get())]
        return [pointer.get() for pointer in self.inputModels if pointer.get() is not None]

    def _noModelError(self):
        run, _ = newestModelRun(self.getProject())
        offer = (" (the wizard of 'Input models' adds the newest trained ones, of run '%s')"
                 % run.getRunName() if run is not None and self.modelSource.get() == MODELS_INPUT else "")
        return "Select at least one model%s." % offer

    def _modelsIfValid(self):
        """The models, or none when they cannot be found (said by the form's validation)."""
        try:
            return self._getModels()
        except ValueError:
            return []

    def getPickDiameter(self):
        """Particle diameter (px of the input micrographs) picked: the form's, else the models'."""
        given = self._diameterParamPx(self.getInputMicrographs())
        models = self._modelsIfValid()
        return given if given != 0 else (models[0].getDiameter() if models else None)

    def _getBoxSize(self):
        return self.boxSize.get() or boxSizeForDiameter(self.getPickDiameter())

    def _explicitThreshold(self):
        """The form's threshold, or None for automatic (the engine's rule decides)."""
        threshold = self.threshold.get()
        return None if threshold == THRESHOLD_AUTO else threshold

    def getPickingThreshold(self, automatic=False):
        """The threshold the engine picks at with this form, by the engine's own rule; with
        ``automatic``, the one it would use with the automatic threshold (what the wizard
        suggests). With the threshold from the scores: the lowest of the picked batches' (every
        pick reaches it).

        Raises:
            ValueError: a model folder or the extra engine options cannot be read, or the
                threshold is read from scores not picked yet.
        """
        if self.thresholdFromScores.get() and not automatic:
            picked = [engine.pickedThreshold(folder)
                      for folder in sorted(glob.glob(self._batchPicksFolder("*")))]
            picked = [t for t in picked if t is not None]
            if not picked:
                raise ValueError("The threshold is read from the scores of each batch; no batch is "
                                 "picked yet.")
            return min(picked)
        return engine.pickingThreshold([m.getPath() for m in self._getModels()], bool(self.tta.get()),
                                       None if automatic else self._explicitThreshold(),
                                       self._engineConfig())

    def _thresholdText(self):
        if self.thresholdFromScores.get():
            return "read from the scores of each batch (label-free)"
        return ("automatic (calibrated)" if self.threshold.get() == THRESHOLD_AUTO
                else "%.3f" % self.threshold.get())

    def _engineConfig(self):
        pick = {"tta": bool(self.tta.get()), "batch_size": self.inferenceBatch.get(),
                "folds": bool(self.useFolds.get())}
        if self.nmsDistance.get():
            pick["nms_radius"] = nmsFraction(self.nmsDistance.get(), self.getPickDiameter())
            pick["saddle_ratio"] = 0.0  # the form's distance is plain non-maximum suppression
        return engine.mergeConfig({"pick": pick}, self._getExtraConfig())
