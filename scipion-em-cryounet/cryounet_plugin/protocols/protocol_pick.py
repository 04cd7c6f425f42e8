"""Pick particles with one or several CryoUNet models, in streaming."""
import os
import shutil

import pyworkflow.protocol.params as params
from pyworkflow.object import Float
from pyworkflow.protocol.constants import LEVEL_ADVANCED, STEPS_PARALLEL
from pwem.objects import Coordinate
from pwem.protocols import ProtParticlePickingAuto

from .. import engine
from ..constants import (BATCHES_FOLDER, BOX_SIZE_AUTO, CMD_PICK, COORDS_FOLDER, ENGINE_COMMAND,
                         MICS_FOLDER, MICS_LIST, MODEL_SOURCES, MODELS_INPUT,
                         MODELS_LIBRARY, RECORDS_FOLDER, SCORE_ATTR, SPREAD_ATTR, THRESHOLD_AUTO)
from ..convert import roundPosition, uniqueStems
from .pick_records import allRecords, readRecord, writeRecord
from .pick_settings import PickSettings
from .protocol_base import CryoUnetProtBase
from .sets import listSome


#: Default micrographs per picking step (one engine run loads the models once per step).
DEFAULT_STREAMING_BATCH = 8


class CryoUnetProtPick(PickSettings, CryoUnetProtBase, ProtParticlePickingAuto):
    """Pick particles with CryoUNet: one trained model, or several as an ensemble (their
    probabilities are averaged and their spread is kept as an uncertainty per particle).

    Works in streaming: micrographs that arrive while the protocol runs are picked in batches of
    'Batch size' micrographs. Each coordinate carries its score (probability) and, with an
    ensemble, the spread of the members' probabilities. A RELION coordinate STAR file per
    micrograph and an index (coordinates.star) are written in extra/coordinates, ready for
    RELION or cryoSPARC import. Micrographs that cannot be read are skipped with a warning.
    """
    _label = "CryoUNet pick"

    def __init__(self, **kwargs):
        ProtParticlePickingAuto.__init__(self, **kwargs)
        self.stepsExecutionMode = STEPS_PARALLEL

    # ================================================================== DEFINE params
    def _defineParams(self, form):
        ProtParticlePickingAuto._defineParams(self, form)
        self._defineDeviceParams(form)
        form.addParam("modelSource", params.EnumParam, choices=MODEL_SOURCES, default=MODELS_INPUT,
                      display=params.EnumParam.DISPLAY_HLIST, important=True, label="Models",
                      help="trained or imported: CryoUNet models of this project (train, refine or "
                           "import model runs). general model: the model shipped with CryoUNet, "
                           "trained on several public datasets; give the particle diameter below. "
                           "models folder: a model of your site's library (the CRYOUNET_MODELS "
                           "folder), chosen by name; the wizard lists them.")
        form.addParam("libraryModel", params.StringParam, default="", condition="modelSource == %d"
                      % MODELS_LIBRARY, label="Model name",
                      help="Name of a model folder inside CRYOUNET_MODELS (the wizard lists the "
                           "usable ones).")
        form.addParam("inputModels", params.MultiPointerParam, pointerClass="CryoUNetModel",
                      condition="modelSource == %d" % MODELS_INPUT, allowsNull=True,
                      label="Input models",
                      help="One CryoUNet model, or several (from an ensemble training or "
                           "different runs) to pick as an ensemble. All must be trained for the "
                           "same particle diameter (pixels) and the micrographs' pixel size. The "
                           "wizard adds the newest trained models of this project (every member "
                           "of the train, refine or import-model run that finished last).")
        self._defineDiameterParams(
            form, "the diameter the models were trained for (in pixels). Give it to pick particles "
                  "of another size than the training ones, or micrographs of another pixel size: "
                  "the engine scales the micrographs so that the particles have the size the "
                  "models work at.")

        form.addSection(label="Picking")
        form.addParam("thresholdFromScores", params.BooleanParam, default=False,
                      label="Threshold from the scores?",
                      help="No (default): the threshold below. Yes: every candidate is picked, then "
                           "each batch is cut at the threshold read from its candidates' scores "
                           "(Otsu's split on the logit scale; the engine's pick --threshold otsu). "
                           "For a model that never saw your protein, such as the general model, "
                           "whose calibrated threshold belongs to its training proteins "
                           "(docs/results.md, 'General model, one protein left out'). Give it "
                           "batches of several micrographs (Streaming tab).")
        form.addParam("threshold", params.FloatParam, default=THRESHOLD_AUTO,
                      condition="not thresholdFromScores",
                      label="Threshold",
                      help="Probability (0-1) a pick must reach. %g = automatic: the threshold "
                           "calibrated on the validation micrographs at training (the best F1; "
                           "for an ensemble, as the engine combines the members'). Lower it to "
                           "favour recall, raise it for precision; the wizard suggests the "
                           "calibrated value. The post-processing protocol re-thresholds "
                           "cheaply afterwards." % THRESHOLD_AUTO)
        form.addParam("nmsDistance", params.FloatParam, default=0, validators=[params.GE(0)],
                      label="Minimum distance (px)",
                      help="Picks closer than this many pixels (of the micrographs) are merged, "
                           "keeping the best-scoring one (non-maximum suppression). 0 = the "
                           "model's own rule (its pick.nms_radius, as a fraction of the particle "
                           "diameter; touching neighbours separated by a valley of the probability "
                           "map are kept, see pick.saddle_ratio). A value here is plain non-maximum "
                           "suppression at that distance: raise it when one particle gets several "
                           "picks.")
        form.addParam("tta", params.BooleanParam, default=True,
                      label="Test-time augmentation",
                      help="Average the predictions over the model's symmetries of the square "
                           "(its pick.tta_symmetries: the 4 rotations, or also their mirror images): "
                           "slightly better picks at 4 (or 8) forward passes instead of one; turn it "
                           "off for a quick look. The automatic threshold is then the one calibrated "
                           "with it at training (docs/results.md).")
        form.addParam("useFolds", params.BooleanParam, default=True,
                      label="With the calibration folds",
                      help="For a model trained with 'Calibration folds' K > 1: pick with its K - 1 "
                           "fold networks too, as one ensemble of K (mean probability; the automatic "
                           "threshold is the mean of theirs), at K times the picking time "
                           "(docs/results.md). No effect on other models.")
        form.addParam("inferenceBatch", params.IntParam, default=1, validators=[params.Positive],
                      expertLevel=LEVEL_ADVANCED, label="Tiles per GPU batch",
                      help="Micrograph tiles processed together by the network (a micrograph is "
                           "cut into tiles only when its working image exceeds pick.tile_size). "
                           "Raise it to use a large GPU fully; 1 keeps memory lowest.")
        form.addParam("boxSize", params.IntParam, default=BOX_SIZE_AUTO,
                      validators=[params.GE(0)], expertLevel=LEVEL_ADVANCED,
                      label="Box size (px)",
                      help="Box size stored with the output coordinates (the default extraction "
                           "box), in pixels of the micrographs. 0 = %g x the models' particle "
                           "diameter, rounded up to an even number (a train or post-process run "
                           "on these coordinates takes the diameter back as box / %g)."
                           % (engine.BOX_FACTOR, engine.BOX_FACTOR))
        self._defineExtraConfigParam(form)
        form.addParallelSection(threads=1, mpi=0)
        self._defineStreamingParams(form)
        form.getParam("streamingBatchSize").setDefault(DEFAULT_STREAMING_BATCH)

    # ================================================================== INSERT steps
    def _insertInitialSteps(self):
        return [self._insertFunctionStep(self.prepareStep, needsGPU=False)]

    def _insertPickMicrographStep(self, mic, prerequisites, *args):
        return self._insertFunctionStep(self.pickMicrographStep, mic.getMicName(), *args,
                                        prerequisites=prerequisites,
                                        needsGPU=self._usesGpuDevice())

    def _insertPickMicrographListStep(self, micList, prerequisites, *args):
        return self._insertFunctionStep(self.pickMicrographListStep,
                                        [mic.getMicName() for mic in micList], *args,
                                        prerequisites=prerequisites,
                                        needsGPU=self._usesGpuDevice())

    # ================================================================== STEPS
    def prepareStep(self):
        for model in self._getModels():
            errors = engine.checkModelFolder(model.getPath())
            if errors:
                raise ValueError("; ".join(errors))
        self._writeEngineConfig("pick", self._engineConfig())
        for folder in (COORDS_FOLDER, RECORDS_FOLDER):
            os.makedirs(self._getExtraPath(folder), exist_ok=True)

    def _pickMicrograph(self, mic, *args):
        self._pickMicrographList([mic], *args)

    def _pickMicrographList(self, micList, *args):
        if not micList:
            return
        tag = "%06d-%06d" % (micList[0].getObjId(), micList[-1].getObjId())
        batchDir = self._batchFolder(tag)
        items = [(mic.getObjId(), mic.getFileName(), mic.getMicName()) for mic in micList]
        stems = self._stemsFor(items)
        readable = []
        for item in items:
            problem = engine.checkMicrograph(item[1])
            if problem:
                self._skip(item, stems[item[0]], problem)
            else:
                readable.append(item)
        if not readable:
            return
        # The batch folder keeps what the engine ran on: links with unique names, the @list,
        # the command line (the configuration is extra/cryounet_pick.json).
        listPath, links = self._linkMicrographs(readable, stems, "pick", os.path.join(batchDir, MICS_FOLDER),
                                                os.path.join(batchDir, MICS_LIST % "pick"))
        picksDir = self._batchPicksFolder(tag)
        args = ["--micrographs", "@" + os.path.abspath(listPath),
                "--output", os.path.abspath(picksDir), "--overwrite",
                "--threshold", engine.THRESHOLD_FROM_SCORES if self.thresholdFromScores.get()
                else engine.thresholdArgument(self._explicitThreshold()),
                "--config", os.path.abspath(self._engineConfigPath("pick")),
                "--device", self._getDeviceArg(),
                "--threads", str(self._engineThreads(self.numberOfThreads.get())),
                # A batch whose micrographs are all unreadable must not stop a streaming run:
                # the engine lists every skipped micrograph with its reason in skipped.json.
                "--allow-all-skipped"]
        for model in self._getModels():
            args += ["--model", os.path.abspath(model.getPath())]
        if self.particleDiameter.get():
            args += ["--diameter", "%.3f" % self.getPickDiameter()]
        self._runEngine(CMD_PICK, args, "pick",
                        commandFile=os.path.join(batchDir, ENGINE_COMMAND % "pick"))
        if not os.path.exists(os.path.join(picksDir, engine.COORDS_INDEX)):
            raise RuntimeError("cryounet pick did not complete batch %s: no %s in %s (see "
                               "the run or job log)" % (tag, engine.COORDS_INDEX, picksDir))
        engineSkipped = engine.readSkipped(picksDir)

        coordsDir = self._getExtraPath(COORDS_FOLDER)
        for item in readable:
            micId = item[0]
            produced = os.path.join(picksDir, stems[micId] + ".star")
            if not os.path.exists(produced):
                reason = (engineSkipped.get(os.path.abspath(links[micId]))
                          or engineSkipped.get(os.path.realpath(links[micId])))
                self._skip(item, stems[micId], "the engine skipped it: %s" % reason if reason
                           else "the engine skipped it (see the run log)")
                continue
            target = os.path.join(coordsDir, stems[micId] + ".star")
            shutil.move(produced, target)
            count = len(engine.readCoordinates(target))
            self._writeRecord(item, stems[micId], coordinates=target, count=count)

    def _batchFolder(self, tag):
        """What the engine ran on for batch ``tag`` (micrograph links, list, command line)."""
        return self._getExtraPath(BATCHES_FOLDER, "batch_%s" % tag)

    def _batchPicksFolder(self, tag):
        """The engine's pick folder of batch ``tag`` (``"*"``: a pattern for every batch's)."""
        return os.path.join(self._batchFolder(tag), "picks")

    def readCoordsFromMics(self, outputDir, micDoneList, outputCoords):
        outputCoords.setBoxSize(self._getBoxSize())
        for mic in micDoneList:
            record = self._readRecord(mic.getObjId())
            if not record or not record.get("coordinates"):
                continue
            picks = engine.readCoordinates(record["coordinates"])
            scores, spread = picks.scores, picks.uncertainty
            for i, (x, y) in enumerate(picks.xy):
                coord = Coordinate()
                coord.setMicrograph(mic)
                coord.setPosition(*roundPosition(x, y))
                setattr(coord, SCORE_ATTR, Float(float(scores[i]) if scores is not None else None))
                if spread is not None:
                    setattr(coord, SPREAD_ATTR, Float(float(spread[i])))
                outputCoords.append(coord)

    def createOutputStep(self):
        """Write the index of the per-micrograph STAR files (RELION/cryoSPARC import)."""
        entries = []
        for record in self._allRecords():
            if record.get("coordinates"):
                entries.append((record["file"], record["coordinates"]))
        engine.writeStarIndex(self._getExtraPath(COORDS_FOLDER, engine.COORDS_INDEX), entries)
        skipped = [r for r in self._allRecords() if r.get("skipped")]
        if skipped:
            self.warning("%d micrograph(s) were skipped: %s"
                         % (len(skipped), listSome("%s (%s)" % (r["file"], r["skipped"])
                                                   for r in skipped)))

    # ================================================================== INFO
    def _validate(self):
        try:
            models = self._getModels()
        except ValueError as exc:
            return [str(exc)]
        if not models:
            return [self._noModelError()]
        errors = self._gpuErrors() + self._engineConfigErrors()
        for model in models:
            errors += engine.checkModelFolder(model.getPath())
        if self.particleDiameter.get():
            errors += self._particleDiameterErrors(self.getPickDiameter(), self.getInputMicrographs(), "")
        if not self.particleDiameter.get() and any(engine.isGeneralModel(m.getPath()) for m in models):
            errors.append("The general model needs the particle diameter: give it (its own %.0f px is "
                          "the diameter of the sets it was trained on, not of these micrographs)."
                          % engine.readModelInfo(engine.generalModelFolder())["diameter"])
        diameters = sorted({round(m.getDiameter() or 0, 1) for m in models})
        if len(diameters) > 1 and not self.particleDiameter.get():
            errors.append("The models were trained for different particle diameters (%s px); "
                          "an ensemble needs one diameter." % ", ".join(map(str, diameters)))
        threshold = self.threshold.get()
        if threshold != THRESHOLD_AUTO and not 0 <= threshold <= 1:
            errors.append("Threshold must be a probability between 0 and 1, or %g (automatic)."
                          % THRESHOLD_AUTO)
        return errors

    def _warnings(self):
        warnings = self._gpuWarnings("Picking")
        if self.particleDiameter.get():
            return warnings  # the diameter is given: the models' training pixel size does not matter
        for model in self._modelsIfValid():
            warnings += self._pixelSizeWarnings(model, self.getInputMicrographs())
            if not model.getSamplingRate():
                warnings.append("Model %s has no training pixel size: whether its %.1f px particle "
                                "diameter fits these micrographs cannot be checked; give the particle "
                                "diameter." % (model.getObjLabel() or model.getObjId(), model.getDiameter()))
        return warnings

    def _summary(self):
        summary = []
        micSet = self.getInputMicrographs()
        if micSet is not None:
            summary.append("Input micrographs: %d" % micSet.getSize())
        models = self._modelsIfValid()
        summary.append("Models: %d (%s), threshold %s." % (
            len(models), "ensemble" if len(models) > 1 else "single model", self._thresholdText()))
        records = self._allRecords()
        if records:
            picked = [r for r in records if r.get("coordinates")]
            skipped = [r for r in records if r.get("skipped")]
            summary.append("Micrographs picked: %d, skipped: %d." % (len(picked), len(skipped)))
            for record in skipped[:5]:
                summary.append("  skipped %s: %s" % (record["file"], record["skipped"]))
        output = getattr(self, "outputCoordinates", None)
        if output is not None:
            summary.append("Particles picked: %d (box size %s px)."
                           % (output.getSize(), output.getBoxSize()))
            summary.append("RELION STAR files: %s" % self._getExtraPath(COORDS_FOLDER))
        else:
            summary.append("Output coordinates not ready yet.")
        return summary

    def _methods(self):
        output = getattr(self, "outputCoordinates", None)
        if output is None:
            return ["Output coordinates not ready yet."]
        models = self._modelsIfValid()
        return ["%d particles were picked from %d micrographs with CryoUNet [Ronneberger2015] "
                "using %s, threshold %s%s."
                % (output.getSize(), len([r for r in self._allRecords() if r.get("coordinates")]),
                   "an ensemble of %d models" % len(models) if len(models) > 1 else "one model",
                   self._thresholdText(),
                   " with test-time augmentation" if self.tta.get() else "")]

    def _citations(self):
        return ["Ronneberger2015"]

    # ================================================================== UTILS
    def _stemsFor(self, items):
        """Unique stems over every micrograph known so far (streaming-safe: a micrograph keeps
        the stem recorded when it was picked)."""
        known = [(m.getObjId(), m.getFileName()) for m in list(self.micDict.values())]
        ids = {mid for mid, _ in known}
        known += [(mid, fn) for mid, fn, _ in items if mid not in ids]
        stems = uniqueStems(known)
        return {mid: stems[mid] for mid, _, _ in items}

    def _recordsFolder(self):
        return self._getExtraPath(RECORDS_FOLDER)

    def _writeRecord(self, item, stem, coordinates=None, count=0, skipped=None):
        writeRecord(self._recordsFolder(), item, stem, coordinates, count, skipped)

    def _skip(self, item, stem, reason):
        self.warning("Micrograph %s skipped: %s" % (item[1], reason))
        self._writeRecord(item, stem, skipped=reason)

    def _readRecord(self, micId):
        return readRecord(self._recordsFolder(), micId)

    def _allRecords(self):
        return allRecords(self._recordsFolder())

