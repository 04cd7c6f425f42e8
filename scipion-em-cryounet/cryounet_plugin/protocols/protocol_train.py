"""Train CryoUNet picking networks (one, or an ensemble) from micrographs and coordinates."""
import os

import pyworkflow.protocol.params as params
from pyworkflow.protocol.constants import LEVEL_ADVANCED, STEPS_PARALLEL
from pwem.protocols import EMProtocol

from .. import engine
from ..constants import (ARCH_ATTENTION_UNET, ARCH_UNET, ARCHITECTURES, AUGMENT_LIGHT,
                         AUGMENTATIONS, CMD_TRAIN, COORDS_FOLDER, LOSS_BCE, LOSS_FOCAL,
                         LOSS_FOCAL_DICE, LOSSES, MAX_ENSEMBLE, MODEL_FOLDER, MODEL_MEMBER_FOLDER,
                         GENERAL_START_BELOW, SEPARATION_AUTO, SEPARATIONS, START_AUTO,
                         START_CHOICES, START_MODEL, START_PICKER, TARGET_DISK, TARGET_SHAPES)
from ..convert import trainingEpochsText, uniqueStems
from ..objects import CryoUNetModel
from .protocol_base import CryoUnetProtBase
from .sets import (coordinateGroups, coordinateMicrographKeys, coordinateScale, matchCoordinates,
                  micrographItems, nonMicrographErrors, requireReadableMicrographs,
                  writeCoordinateFiles)
from .train_settings import TrainSettings

#: Particles below which validation statistics are unreliable.
FEW_PARTICLES = 30


def outputModelName(member):
    """Output name of ensemble member ``member`` (1-based): outputModel, outputModel2, ..."""
    return "outputModel" if member == 1 else "outputModel%d" % member


#: Every output an ensemble can have (a dict: an Enum would make outputModel2.. aliases of
#: outputModel, all having the same class).
TRAIN_OUTPUTS = {outputModelName(member): CryoUNetModel for member in range(1, MAX_ENSEMBLE + 1)}


class CryoUnetProtTrain(TrainSettings, CryoUnetProtBase, EMProtocol):
    """Train a CryoUNet particle picker (a U-Net that predicts particle centres) from
    micrographs and coordinates picked on some of them (manually or by another picker).

    Micrographs without coordinates are treated as unlabelled and not used for supervised
    training (use the refine protocol to exploit them). A fraction of the labelled micrographs
    is held out to validate each epoch and to calibrate the picking threshold. With an ensemble
    size K > 1, K networks are trained with different seeds (and optionally architectures); the
    picking protocol averages them and reports their disagreement.
    """
    _label = "CryoUNet train"
    _possibleOutputs = TRAIN_OUTPUTS

    def __init__(self, **kwargs):
        EMProtocol.__init__(self, **kwargs)
        self.stepsExecutionMode = STEPS_PARALLEL

    # ================================================================== DEFINE params
    def _defineParams(self, form):
        form.addSection(label="Input")
        self._defineDeviceParams(form)
        form.addParam("inputMicrographs", params.PointerParam, pointerClass="SetOfMicrographs",
                      important=True, label="Input micrographs",
                      help="Micrographs (MRC) to train on. Those with coordinates in the set "
                           "below are the labelled examples; the others are ignored here.")
        form.addParam("inputCoordinates", params.PointerParam, pointerClass="SetOfCoordinates",
                      important=True, label="Input coordinates",
                      help="Particle positions on some or all of the input micrographs (manual "
                           "picks, another picker's, or a pick corrected on a few micrographs). "
                           "Only the micrographs with coordinates are used. They are matched to "
                           "the micrographs by micrograph id (or by name when the ids differ) and "
                           "rescaled when their micrographs have another pixel size. Pick every "
                           "particle of a labelled micrograph: unpicked particles count as "
                           "background.")
        self._defineDiameterParams(
            form, "the box size of the input coordinates divided by %g (CryoUNet's box convention: "
                  "its pick protocol writes boxes of %g x the diameter), converted to pixels of the "
                  "input micrographs. The wizard fills it the same way."
                  % (engine.BOX_FACTOR, engine.BOX_FACTOR))

        form.addSection(label="Training")
        form.addParam("startFrom", params.EnumParam, choices=START_CHOICES, default=START_AUTO,
                      label="Start from",
                      help="automatic: the general model shipped with CryoUNet when fewer than %d "
                           "micrographs are labelled (a pretrained start helps most with one "
                           "labelled micrograph; see docs/results.md), else scratch. scratch: random "
                           "weights. general model: always the general model. a model: the weights of "
                           "the CryoUNet model below. the model that picked them: the model of the "
                           "CryoUNet pick run the input coordinates come from (the correction loop: "
                           "pick, correct a few micrographs, train, pick again); it is found by "
                           "following the coordinates back through the runs that made them, or "
                           "chosen in 'Pick run'. A starting model brings its own architecture and "
                           "preprocessing, which replace this form's. An interrupted run (Continue) "
                           "resumes from its checkpoint." % GENERAL_START_BELOW)
        form.addParam("initModel", params.PointerParam, pointerClass="CryoUNetModel",
                      allowsNull=True, condition="startFrom == %d" % START_MODEL,
                      label="Starting model",
                      help="A CryoUNet model (a train, refine or import-model output) whose weights "
                           "training starts from, e.g. last week's model of the same sample.")
        form.addParam("pickRun", params.PointerParam, pointerClass="CryoUnetProtPick",
                      allowsNull=True, condition="startFrom == %d" % START_PICKER,
                      label="Pick run",
                      help="Optional: the CryoUNet pick run whose picks you corrected, when the input "
                           "coordinates do not lead back to it (e.g. corrected in a manual picking "
                           "run, or imported without naming the picks they correct). Empty: the pick "
                           "run is found from the input coordinates' provenance. Training starts "
                           "from the one model it picked with (the general model, a models-folder "
                           "model or a trained one; not an ensemble).")
        form.addParam("architecture", params.EnumParam, choices=ARCHITECTURES, default=ARCH_UNET,
                      label="Architecture",
                      help="unet: a plain U-Net (fast, a good default). attention_unet: "
                           "attention gates on the skip connections (can help on crowded or "
                           "low-contrast micrographs). residual_unet: ResNet blocks per level. "
                           "efficient_unet: EfficientNet-style blocks with squeeze-excitation "
                           "(more capacity per parameter).")
        form.addParam("epochs", params.IntParam, default=40, validators=[params.Positive],
                      label="Epochs",
                      help="Maximum number of epochs (each of 'Steps per epoch' optimiser "
                           "steps). Training stops earlier when the validation F1 stops "
                           "improving (see 'Patience').")
        form.addParam("loss", params.EnumParam, choices=LOSSES, default=LOSS_BCE,
                      label="Loss",
                      help="bce: binary cross-entropy (default). focal: down-weights easy "
                           "background pixels (sparse particles). dice: overlap-based. "
                           "bce_dice / focal_dice: sums of both.")
        form.addParam("augmentation", params.EnumParam, choices=AUGMENTATIONS,
                      default=AUGMENT_LIGHT, label="Augmentation",
                      help="none; light: flips and 90-degree rotations (default); strong: also "
                           "intensity, noise and blur changes (few labelled micrographs).")
        form.addParam("validFraction", params.FloatParam, default=0.2,
                      validators=[params.Range(0.01, 0.9)],
                      label="Validation fraction",
                      help="Fraction (0-1) of the labelled micrographs held out to validate each "
                           "epoch and calibrate the picking threshold (at least one; with a "
                           "single labelled micrograph, a strip of it).")
        form.addParam("seed", params.IntParam, default=0, validators=[params.GE(0)],
                      label="Random seed",
                      help="Seed of the random number generators (sampling, augmentation, "
                           "initialisation, validation split). Ensemble member k uses seed + k - 1.")
        form.addParam("ensembleSize", params.IntParam, default=1,
                      validators=[params.Range(1, MAX_ENSEMBLE)],
                      label="Ensemble size (K)",
                      help="Number of networks to train (1-%d). K > 1 trains K models with "
                           "different seeds; picking with all of them averages their "
                           "probabilities (more robust) and reports their spread as an "
                           "uncertainty per particle. With several GPUs and threads, members "
                           "train in parallel." % MAX_ENSEMBLE)
        form.addParam("dataParallel", params.BooleanParam, default=True,
                      label="Data-parallel on several GPUs",
                      help="Yes: a training step given several GPUs trains its network on all of "
                           "them at once (torchrun, one process per GPU; the batch is shared out, "
                           "so it must be a multiple of the GPUs). Scipion gives one step all the "
                           "'GPU IDs' when the protocol has 1 thread, and shares them among the steps "
                           "running at once otherwise; on a queue, the step's job asks for its GPUs. "
                           "No: each step uses its first GPU.")
        form.addParam("mixArchitectures", params.BooleanParam, default=False,
                      condition="ensembleSize > 1",
                      label="Alternate architectures",
                      help="Yes: ensemble members cycle through the architectures (%s), "
                           "starting with the one selected above. No: all use the selected one."
                           % ", ".join(ARCHITECTURES))

        form.addSection(label="Advanced")
        form.addParam("stepsPerEpoch", params.IntParam, default=40, validators=[params.Positive],
                      expertLevel=LEVEL_ADVANCED, label="Steps per epoch",
                      help="Optimiser steps (batches) per epoch.")
        form.addParam("batchSize", params.IntParam, default=8, validators=[params.Positive],
                      expertLevel=LEVEL_ADVANCED, label="Batch size (patches)",
                      help="Training patches per optimiser step. Lower it if the GPU runs out "
                           "of memory.")
        form.addParam("patchSize", params.IntParam, default=96, validators=[params.GE(16)],
                      expertLevel=LEVEL_ADVANCED, label="Patch size (working px)",
                      help="Side of a training patch, in pixels of the downsampled (working) "
                           "micrograph; rounded up to a multiple of 2^depth.")
        form.addParam("workingDiameter", params.FloatParam, default=16.0,
                      validators=[params.GT(2)], expertLevel=LEVEL_ADVANCED,
                      label="Working diameter (px)",
                      help="Particle diameter, in pixels, after downsampling: micrographs are "
                           "reduced by diameter / working diameter (never enlarged). Larger "
                           "values keep more detail and cost more time.")
        form.addParam("learningRate", params.FloatParam, default=2e-3,
                      validators=[params.Positive], expertLevel=LEVEL_ADVANCED,
                      label="Learning rate", help="Peak AdamW learning rate (cosine decay).")
        form.addParam("patience", params.IntParam, default=10, validators=[params.GE(0)],
                      expertLevel=LEVEL_ADVANCED, label="Patience (epochs)",
                      help="Stop after this many epochs without a better validation F1 "
                           "(0 = never stop early).")
        form.addParam("baseChannels", params.IntParam, default=16, validators=[params.GE(2)],
                      expertLevel=LEVEL_ADVANCED, label="Base channels",
                      help="Feature channels of the first U-Net level (each level down doubles "
                           "them). More channels: more capacity, more memory.")
        form.addParam("depth", params.IntParam, default=3, validators=[params.Range(1, 6)],
                      expertLevel=LEVEL_ADVANCED, label="Depth",
                      help="Number of down-sampling levels of the U-Net.")
        form.addParam("unlabelledWeight", params.FloatParam, default=1.0,
                      validators=[params.Range(0.0, 1.0)], expertLevel=LEVEL_ADVANCED,
                      label="Background weight",
                      help="Loss weight (0-1) of pixels far from every pick, which are treated "
                           "as background. Lower it (e.g. 0.3) when the labelled micrographs are "
                           "not exhaustively picked (positive-unlabelled learning).")
        form.addParam("separation", params.EnumParam, choices=SEPARATIONS, default=SEPARATION_AUTO,
                      expertLevel=LEVEL_ADVANCED, label="Separate touching particles",
                      help="on: between two picks closer than %g diameters, the pixels about "
                           "equally far from both are trained as background, so touching particles "
                           "get separate peaks (crowded micrographs). auto (default): on when at "
                           "least %g %% of the picks have such a neighbour; the training log says "
                           "which. off: never." % (engine.CROWDED_DISTANCE, 100 * engine.CROWDED_SHARE))
        form.addParam("targetShape", params.EnumParam, choices=TARGET_SHAPES, default=TARGET_DISK,
                      expertLevel=LEVEL_ADVANCED, label="Target shape",
                      help="What the network learns to draw around each pick. disk (default): a "
                           "disk of %g diameters, the best F1 at the calibrated threshold. "
                           "gaussian: a Gaussian of sigma %g diameters, whose sharper peaks rank "
                           "particles in a crowd better (a higher average precision: more of them "
                           "found when you pick at a low threshold and clean up by 2D "
                           "classification), best with Calibration folds, at a lower F1 at the "
                           "calibrated threshold on crowded micrographs (README, 'Touching "
                           "particles')." % (engine.SHAPE_RADII["disk"], engine.SHAPE_RADII["gaussian"]))
        form.addParam("calibrationFolds", params.IntParam, default=0, validators=[params.GE(0)],
                      expertLevel=LEVEL_ADVANCED, label="Calibration folds",
                      help="0: the picking threshold is calibrated on the validation micrographs "
                           "alone. K >= 2: cross-fitted over every labelled micrograph: the "
                           "validation micrographs are one fold, the training micrographs are shared "
                           "out into the other K - 1, one more network is trained per fold (K - 1 "
                           "more trainings per network) and the threshold comes from all folds, "
                           "each picked by a network that did not train on it. K = 1 + the number of "
                           "training micrographs is leave-one-micrograph-out. Steadier thresholds "
                           "when few micrographs are labelled, at K times the training time "
                           "(docs/results.md).")
        form.addParam("cpuProcesses", params.IntParam, default=1, validators=[params.Range(1, 64)],
                      expertLevel=LEVEL_ADVANCED, label="Training processes on the CPU",
                      help="With 'GPU IDs' = No: train each network in this many data-parallel "
                           "processes (torchrun, gloo), sharing the protocol's threads; for CPU-only "
                           "clusters. 1 = one process.")
        self._defineExtraConfigParam(form)
        form.addParallelSection(threads=1, mpi=0)

    # ================================================================== INSERT steps
    def _insertAllSteps(self):
        convertId = self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        trainIds = [self._insertFunctionStep(self.trainStep, member, prerequisites=[convertId],
                                             needsGPU=self._usesGpuDevice())
                    for member in self._members()]
        self._insertFunctionStep(self.createOutputStep, prerequisites=trainIds, needsGPU=False)

    # ================================================================== STEPS
    def convertInputStep(self):
        micSet = self.inputMicrographs.get()
        coordSet = self.inputCoordinates.get()
        items = micrographItems(micSet)
        requireReadableMicrographs(items, micSet.getNameId())

        groups = coordinateGroups(coordSet)
        mapping, byName = matchCoordinates(
            items, {cid: g["name"] for cid, g in groups.items()})
        if not mapping:
            raise ValueError(
                "None of the %d micrographs of %s has coordinates in %s (the coordinates refer "
                "to %d other micrographs, matched neither by id nor by name). Give the "
                "micrographs the coordinates were picked on."
                % (len(items), micSet.getNameId(), coordSet.getNameId(), len(groups)))
        if byName:
            self.info("Coordinates matched to micrographs by name (the ids differ).")

        for problem in self._diameterErrors():
            raise ValueError(problem)
        diameter = self._getDiameterPx()
        scale = coordinateScale(self.inputCoordinates.get(), self.inputMicrographs.get())
        stems = uniqueStems((mid, fn) for mid, fn, _ in items)
        # only labelled micrographs go to the engine (the others would be ignored by it)
        labelledIds = set(mapping.values())
        listPath, _ = self._linkMicrographs([i for i in items if i[0] in labelledIds], stems,
                                            "train")
        coordsDir = self._getExtraPath(COORDS_FOLDER)
        nParticles = writeCoordinateFiles(coordsDir, {
            stems[micId]: [(x * scale, y * scale) for x, y in groups[coordMicId]["xy"]]
            for coordMicId, micId in mapping.items()})
        labelled = list(mapping.values())
        unmatched = len(groups) - len(mapping)
        if unmatched:
            self.warning("%d micrograph(s) of the coordinates are not in %s; their %s "
                         "coordinates are ignored."
                         % (unmatched, micSet.getNameId(),
                            sum(len(groups[c]["xy"]) for c in groups if c not in mapping)))
        self.info("Training data: %d labelled micrographs (%d particles), %d unlabelled; "
                  "diameter %.2f px; coordinate scale %.4f."
                  % (len(labelled), nParticles, len(items) - len(labelled), diameter, scale))

        for member in self._members():
            self._writeEngineConfig(self._memberTag(member), self._engineConfig(member))
        self._saveInputsInfo({"diameter_px": diameter, "labelled_micrographs": len(labelled),
                              "unlabelled_micrographs": len(items) - len(labelled),
                              "particles": nParticles, "micrographs_list": listPath,
                              "coordinates_folder": coordsDir, "coordinate_scale": scale,
                              "start": self._startText(len(labelled))})

    def trainStep(self, member):
        info = self._loadInputsInfo()
        output = self._getModelFolder(member)
        args = ["--micrographs", "@" + os.path.abspath(info["micrographs_list"]),
                "--coordinates", os.path.abspath(info["coordinates_folder"]),
                "--diameter", "%.3f" % info["diameter_px"],
                "--output", os.path.abspath(output),
                "--config", os.path.abspath(self._engineConfigPath(self._memberTag(member)))]
        args += self._trainDeviceArgs()
        if engine.resumableTraining(output):  # Continue after an interruption
            self.info("Resuming the interrupted training in %s." % output)
            args.append("--resume")
        else:
            args += ["--overwrite"] + self._initArgs(info.get("labelled_micrographs", 0))
        self._runEngine(CMD_TRAIN, args, self._memberTag(member))
        errors = engine.checkModelFolder(output)
        if errors:
            raise RuntimeError("cryounet train finished without a usable model: %s"
                               % "; ".join(errors))

    def createOutputStep(self):
        sampling = self.inputMicrographs.get().getSamplingRate()
        outputs = {}
        for member in self._members():
            folder = self._getModelFolder(member)
            errors = engine.checkModelFolder(folder)
            if errors:
                raise RuntimeError("; ".join(errors))
            outputs[outputModelName(member)] = CryoUNetModel.fromFolder(folder, samplingRate=sampling)
        self._defineOutputs(**outputs)
        for model in outputs.values():
            self._defineSourceRelation(self.inputMicrographs, model)
            self._defineSourceRelation(self.inputCoordinates, model)

    # ================================================================== INFO
    def _validate(self):
        errors = []
        micSet = self.inputMicrographs.get()
        coordSet = self.inputCoordinates.get()
        if micSet is None or coordSet is None:
            return errors
        errors += self._gpuErrors() + self._engineConfigErrors() + nonMicrographErrors(micSet)
        errors += self._startErrors()
        items = micrographItems(micSet)
        errors += self._diameterErrors() + self._processErrors()
        if coordSet.getSize() == 0:
            errors.append("The input coordinates are empty.")
        else:
            mapping, _ = matchCoordinates(items, coordinateMicrographKeys(coordSet))
            if not mapping:
                errors.append("None of the input micrographs has coordinates in the input "
                              "coordinates (matched by micrograph id or name).")
            else:
                errors += self._calibrationFoldErrors(len(mapping))
        return errors

    def _warnings(self):
        warnings = self._gpuWarnings("Training")
        micSet = self.inputMicrographs.get()
        coordSet = self.inputCoordinates.get()
        if micSet is None or coordSet is None:
            return warnings
        if 0 < coordSet.getSize() < FEW_PARTICLES:
            warnings.append("Only %d particles: the network will be weak and its validation "
                            "statistics unreliable." % coordSet.getSize())
        items = micrographItems(micSet)
        mapping, _ = matchCoordinates(items, coordinateMicrographKeys(coordSet))
        unlabelled = len(items) - len(mapping)
        if mapping and unlabelled:
            warnings.append("%d of %d micrographs have no coordinates and are not used for "
                            "training (the refine protocol can use them as unlabelled data)."
                            % (unlabelled, len(items)))
        return warnings

    def _summary(self):
        summary = []
        info = self._loadInputsInfo()
        if info:
            summary.append("Trained on %d labelled micrographs (%d particles), particle "
                           "diameter %.1f px, starting from %s."
                           % (info.get("labelled_micrographs", 0), info.get("particles", 0),
                              info.get("diameter_px", 0), info.get("start", "an unrecorded start")))
        models = self._outputModels()
        if not models:
            summary.append("Output model(s) not ready yet.")
        for name, model in models:
            summary.append("%s: %s" % (name, model.describe()))
            summary.append("  %s" % self._epochsText(model.getPath()))
        return summary

    def _epochsText(self, folder):
        """Epochs run and the one whose weights the model kept, from its folder's records."""
        try:
            return trainingEpochsText(engine.readHistory(folder), engine.readModelInfo(folder),
                                      self._engineConfig(1)["train"]["epochs"],
                                      engine.readMainEpochs(folder))
        except (ValueError, KeyError, TypeError) as exc:
            return "Epochs: unknown (%s)." % exc

    def _methods(self):
        models = self._outputModels()
        if not models:
            return ["Output model(s) not ready yet."]
        info = self._loadInputsInfo()
        first = models[0][1]
        text = ("%s CryoUNet %s network%s [Ronneberger2015] %s trained to pick particles of "
                "%.1f px diameter from %d micrographs with %d labelled particles, for up to %d "
                "epochs with the %s loss and %s augmentation%s."
                % ("An ensemble of %d" % len(models) if len(models) > 1 else "A",
                   first.getArchitecture(), "s" if len(models) > 1 else "",
                   "were" if len(models) > 1 else "was",
                   first.getDiameter(), info.get("labelled_micrographs", 0),
                   info.get("particles", 0), self.epochs.get(),
                   self.getEnumText("loss"), self.getEnumText("augmentation"),
                   self._targetsText(first.getPath())))
        if first.getF1() is not None:
            text += (" On held-out micrographs it reached precision %.3f, recall %.3f and F1 "
                     "%.3f at a calibrated threshold of %.3f."
                     % (first.getPrecision(), first.getRecall(), first.getF1(),
                        first.getThreshold() or 0))
        return [text]

    def _citations(self):
        cites = ["Ronneberger2015"]
        if self.architecture.get() == ARCH_ATTENTION_UNET or (
                self.mixArchitectures.get() and self.ensembleSize.get() > 1):
            cites.append("Oktay2018")
        if self.loss.get() in (LOSS_FOCAL, LOSS_FOCAL_DICE):
            cites.append("Lin2017")
        return cites

    # ================================================================== UTILS
    def _members(self):
        return list(range(1, max(1, self.ensembleSize.get() or 1) + 1))

    def _memberTag(self, member):
        return "train" if self.ensembleSize.get() <= 1 else "train_%d" % member

    def _getModelFolder(self, member):
        if self.ensembleSize.get() <= 1:
            return self._getExtraPath(MODEL_FOLDER)
        return self._getExtraPath(MODEL_MEMBER_FOLDER % member)

    @staticmethod
    def _targetsText(modelFolder):
        """', on Gaussian targets of sigma ... diameters' for a model trained on them (as its
        folder records), '' for the default disks or an unreadable folder."""
        try:
            info = engine.readModelInfo(modelFolder)
        except ValueError:
            return ""
        if info["target_shape"] != "gaussian":
            return ""
        return ", on Gaussian targets of sigma %g diameters around the picks" % info["target_radius"]

    def _outputModels(self):
        models = []
        for member in self._members():
            model = getattr(self, outputModelName(member), None)
            if model is not None:
                models.append((outputModelName(member), model))
        return models
