"""Refine a CryoUNet model by pseudo-labelled self-training on unlabelled micrographs."""
import enum
import os

import pyworkflow.protocol.params as params
from pyworkflow.protocol.constants import LEVEL_ADVANCED
from pwem.protocols import EMProtocol

from .. import engine
from ..constants import CMD_REFINE, COORDS_FOLDER, MODEL_FOLDER
from ..convert import formatRefineHistory, uniqueStems
from ..objects import CryoUNetModel
from .protocol_base import CryoUnetProtBase
from .sets import (coordinateGroups, diameterFromBoxSize, micrographItems, nonMicrographErrors,
                  requireReadableMicrographs, smallestMicrographSide, writeCoordinateFiles)


#: Relative difference between the coordinates' implied diameter and the model's that is warned about.
BOX_DIAMETER_TOLERANCE = 0.15


class CryoUnetRefineOutputs(enum.Enum):
    outputModel = CryoUNetModel


class CryoUnetProtRefine(CryoUnetProtBase, EMProtocol):
    """Improve a trained CryoUNet model with unlabelled micrographs (pseudo-labelled
    self-training).

    In each round the current model picks the unlabelled micrographs; its confident picks become
    pseudo-labels (positives above a high threshold, background below a low one) and the model is
    fine-tuned on them together with the labelled micrographs. The labelled micrographs also
    validate every round. The summary lists, per round, how many pseudo-labels were used.
    """
    _label = "CryoUNet refine (pseudo-labels)"
    _possibleOutputs = CryoUnetRefineOutputs

    # ================================================================== DEFINE params
    def _defineParams(self, form):
        form.addSection(label="Input")
        self._defineDeviceParams(form)
        form.addParam("inputModel", params.PointerParam, pointerClass="CryoUNetModel",
                      important=True, label="Model to refine",
                      help="A CryoUNet model from the train or import-model protocol. Its "
                           "particle diameter (pixels) is kept, so the micrographs below must "
                           "have the pixel size of its training micrographs.")
        form.addParam("inputCoordinates", params.PointerParam, pointerClass="SetOfCoordinates",
                      important=True, label="Labelled coordinates",
                      help="Reliable particle positions (e.g. the training picks). The "
                           "micrographs they were picked on, those with at least one "
                           "coordinate, are the labelled data: they anchor the fine-tuning and "
                           "validate each round.")
        form.addParam("inputUnlabelled", params.PointerParam, pointerClass="SetOfMicrographs",
                      important=True, label="Unlabelled micrographs",
                      help="Micrographs (MRC) without picks, to be pseudo-labelled. Labelled "
                           "micrographs found here too are used once, as labelled data.")
        form.addParam("rounds", params.IntParam, default=3, validators=[params.Range(1, 20)],
                      label="Rounds",
                      help="Self-training rounds (pseudo-label, then fine-tune). Two to four "
                           "usually suffice; the summary shows whether the validation F1 still "
                           "improves.")
        form.addParam("epochs", params.IntParam, default=10, validators=[params.Positive],
                      label="Epochs per round",
                      help="Fine-tuning epochs in each round (each of the model's steps per "
                           "epoch), starting from the previous round's weights.")
        form.addParam("seed", params.IntParam, default=0, validators=[params.GE(0)],
                      label="Random seed", help="Seed of sampling and augmentation.")
        form.addParam("positiveStart", params.FloatParam, default=0.98,
                      validators=[params.Range(0.5, 1.0)], expertLevel=LEVEL_ADVANCED,
                      label="Pseudo-positive threshold (first round)",
                      help="Probability (0.5-1) a predicted particle needs to become a "
                           "pseudo-label in the first round.")
        form.addParam("positiveEnd", params.FloatParam, default=0.90,
                      validators=[params.Range(0.5, 1.0)], expertLevel=LEVEL_ADVANCED,
                      label="Pseudo-positive threshold (last round)",
                      help="Probability needed in the last round; the threshold relaxes "
                           "linearly between the first and the last round.")
        form.addParam("negativeStart", params.FloatParam, default=0.02,
                      validators=[params.Range(0.0, 0.5)], expertLevel=LEVEL_ADVANCED,
                      label="Background threshold (first round)",
                      help="Pixels predicted below this probability (0-0.5) are used as "
                           "background in the first round; pixels between the two thresholds "
                           "are ignored.")
        form.addParam("negativeEnd", params.FloatParam, default=0.10,
                      validators=[params.Range(0.0, 0.5)], expertLevel=LEVEL_ADVANCED,
                      label="Background threshold (last round)",
                      help="Background threshold of the last round (relaxed linearly).")
        form.addParam("curriculum", params.BooleanParam, default=True,
                      expertLevel=LEVEL_ADVANCED, label="Curriculum",
                      help="Yes: rank the unlabelled micrographs by confidence and use the most "
                           "confident r/rounds of them in round r. No: all from the first round.")
        form.addParam("pseudoTta", params.BooleanParam, default=True,
                      expertLevel=LEVEL_ADVANCED, label="Test-time augmentation",
                      help="Predict the pseudo-labels averaging over the model's test-time "
                           "symmetries (its pick.tta_symmetries: 4 rotations, or also their mirror "
                           "images): more reliable labels, 4 (or 8) times slower prediction.")
        form.addParam("learningRate", params.FloatParam, default=5e-4,
                      validators=[params.Positive], expertLevel=LEVEL_ADVANCED,
                      label="Learning rate",
                      help="Peak learning rate of the fine-tuning (lower than for training "
                           "from scratch, so the model does not forget).")
        self._defineExtraConfigParam(form)
        form.addParallelSection(threads=1, mpi=0)

    # ================================================================== INSERT steps
    def _insertAllSteps(self):
        convertId = self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        refineId = self._insertFunctionStep(self.refineStep, prerequisites=[convertId],
                                            needsGPU=self._usesGpuDevice())
        self._insertFunctionStep(self.createOutputStep, prerequisites=[refineId],
                                 needsGPU=False)

    # ================================================================== STEPS
    def convertInputStep(self):
        model = self.inputModel.get()
        errors = engine.checkModelFolder(model.getPath())
        if errors:
            raise ValueError("; ".join(errors))
        coordSet = self.inputCoordinates.get()
        labelledSet = coordSet.getMicrographs()
        unlabelledSet = self.inputUnlabelled.get()
        groups = coordinateGroups(coordSet)
        labelledItems = [item for item in micrographItems(labelledSet)
                         if item[0] in groups]
        if not labelledItems:
            raise ValueError("The labelled coordinates %s refer to no micrograph of %s."
                             % (coordSet.getNameId(), labelledSet.getNameId()))
        labelledFiles = {os.path.realpath(fn) for _, fn, _ in labelledItems}
        unlabelledItems = []
        duplicates = 0
        for micId, fn, name in micrographItems(unlabelledSet):
            if os.path.realpath(fn) in labelledFiles:
                duplicates += 1
                continue
            unlabelledItems.append(("u%s" % micId, fn, name))
        if duplicates:
            self.info("%d unlabelled micrograph(s) are labelled ones and are used as labelled."
                      % duplicates)
        if not unlabelledItems:
            raise ValueError("No unlabelled micrographs left in %s after removing the labelled "
                             "ones." % unlabelledSet.getNameId())
        allItems = labelledItems + unlabelledItems
        requireReadableMicrographs(allItems, "the input sets")

        stems = uniqueStems((mid, fn) for mid, fn, _ in allItems)
        labelledList, _ = self._linkMicrographs(labelledItems, stems, "labelled")
        unlabelledList, _ = self._linkMicrographs(unlabelledItems, stems, "unlabelled")
        coordsDir = self._getExtraPath(COORDS_FOLDER)
        nParticles = writeCoordinateFiles(
            coordsDir, {stems[micId]: groups[micId]["xy"] for micId, _, _ in labelledItems})
        self._writeEngineConfig("refine", self._engineConfig())
        self._saveInputsInfo({"labelled_micrographs": len(labelledItems),
                              "unlabelled_micrographs": len(unlabelledItems),
                              "particles": nParticles, "labelled_list": labelledList,
                              "unlabelled_list": unlabelledList, "coordinates_folder": coordsDir})
        self.info("Refinement data: %d labelled micrographs (%d particles), %d unlabelled."
                  % (len(labelledItems), nParticles, len(unlabelledItems)))

    def refineStep(self):
        info = self._loadInputsInfo()
        output = self._getExtraPath(MODEL_FOLDER)
        args = ["--model", os.path.abspath(self.inputModel.get().getPath()),
                "--micrographs", "@" + os.path.abspath(info["labelled_list"]),
                "--coordinates", os.path.abspath(info["coordinates_folder"]),
                "--unlabelled", "@" + os.path.abspath(info["unlabelled_list"]),
                "--output", os.path.abspath(output), "--overwrite",
                "--rounds", str(self.rounds.get()),
                "--config", os.path.abspath(self._engineConfigPath("refine")),
                "--device", self._getDeviceArg(), "--threads", str(self._engineThreads())]
        self._runEngine(CMD_REFINE, args, "refine")
        errors = engine.checkModelFolder(output)
        if errors:
            raise RuntimeError("cryounet refine finished without a usable model: %s"
                               % "; ".join(errors))
        history = engine.readRefineHistory(output)
        if not history:
            raise RuntimeError("cryounet refine wrote no refinement history in %s" % output)
        for line in formatRefineHistory(history):
            self.info(line)

    def createOutputStep(self):
        folder = self._getExtraPath(MODEL_FOLDER)
        model = CryoUNetModel.fromFolder(folder, samplingRate=self.inputModel.get().getSamplingRate())
        self._defineOutputs(outputModel=model)
        self._defineSourceRelation(self.inputModel, model)
        self._defineSourceRelation(self.inputCoordinates, model)
        self._defineSourceRelation(self.inputUnlabelled, model)

    # ================================================================== INFO
    def _validate(self):
        errors = self._gpuErrors() + self._engineConfigErrors()
        model = self.inputModel.get()
        if model is not None:
            errors += engine.checkModelFolder(model.getPath())
        unlabelled = self.inputUnlabelled.get()
        if unlabelled is not None:
            errors += nonMicrographErrors(unlabelled)
            side = smallestMicrographSide(unlabelled)
            if model is not None and side and model.getDiameter() >= side:
                errors.append("The model's particle diameter (%.1f px) is not smaller than the "
                              "unlabelled micrographs (%d px)." % (model.getDiameter(), side))
        coordSet = self.inputCoordinates.get()
        if coordSet is not None and coordSet.getSize() == 0:
            errors.append("The labelled coordinates are empty.")
        return errors

    def _warnings(self):
        warnings = self._gpuWarnings("Refinement")
        model = self.inputModel.get()
        if model is None:
            return warnings
        coordSet = self.inputCoordinates.get()
        warnings += self._pixelSizeWarnings(model, self.inputUnlabelled.get(), "the unlabelled micrographs")
        warnings += self._pixelSizeWarnings(model, coordSet.getMicrographs() if coordSet is not None else None,
                                            "the labelled micrographs")
        boxDiameter = diameterFromBoxSize(coordSet.getBoxSize() if coordSet is not None else None)
        if boxDiameter and model.getDiameter() and \
                abs(boxDiameter - model.getDiameter()) > BOX_DIAMETER_TOLERANCE * model.getDiameter():
            warnings.append("The labelled coordinates' box size (%s px) implies a particle diameter "
                            "of %.1f px, but the model was trained for %.1f px: the refinement "
                            "keeps the model's diameter. Check that the coordinates belong to "
                            "these micrographs." % (coordSet.getBoxSize(), boxDiameter,
                                                    model.getDiameter()))
        return warnings

    def _summary(self):
        summary = []
        info = self._loadInputsInfo()
        if info:
            summary.append("%d labelled micrographs (%d particles), %d unlabelled micrographs."
                           % (info.get("labelled_micrographs", 0), info.get("particles", 0),
                              info.get("unlabelled_micrographs", 0)))
        if not hasattr(self, "outputModel"):
            summary.append("Refined model not ready yet.")
            return summary
        try:
            summary += formatRefineHistory(engine.readRefineHistory(self.outputModel.getPath()))
        except ValueError as exc:
            summary.append(str(exc))
        summary.append("Refined model: %s" % self.outputModel.describe())
        return summary

    def _methods(self):
        if not hasattr(self, "outputModel"):
            return ["Refined model not ready yet."]
        history = engine.readRefineHistory(self.outputModel.getPath())
        used = ", ".join(str(h.get("pseudo_positives")) for h in history if h.get("round"))
        return ["The CryoUNet model was refined by %d rounds of pseudo-labelled self-training "
                "[Lee2013] on %d unlabelled micrographs (pseudo-labelled particles per round: "
                "%s); the refined model has validation F1 %.3f."
                % (len([h for h in history if h.get("round")]), self._loadInputsInfo().get("unlabelled_micrographs", 0),
                   used, self.outputModel.getF1() or 0)]

    def _citations(self):
        return ["Ronneberger2015", "Lee2013"]

    # ================================================================== UTILS
    def _engineConfig(self):
        config = {
            "train": {"seed": self.seed.get(), "learning_rate": self.learningRate.get()},
            "refine": {"rounds": self.rounds.get(), "epochs_per_round": self.epochs.get(),
                       "positive_start": self.positiveStart.get(),
                       "positive_end": self.positiveEnd.get(),
                       "negative_start": self.negativeStart.get(),
                       "negative_end": self.negativeEnd.get(),
                       "curriculum": bool(self.curriculum.get()),
                       "tta": bool(self.pseudoTta.get())},
        }
        return engine.mergeConfig(config, self._getExtraConfig())
