"""What the train form sends to the engine: its configuration per ensemble member, the device
and process arguments of a step, the particle diameter and the training start, with the form
checks of those values (a mixin of :class:`CryoUnetProtTrain`)."""
import os

from .. import engine
from ..constants import (ARCHITECTURES, AUGMENTATIONS, DEVICE_CPU, GENERAL_START_BELOW, LOSSES,
                         SEPARATIONS, START_AUTO, START_GENERAL, START_MODEL, START_PICKER,
                         START_SCRATCH, TARGET_SHAPES)
from .sets import coordinateScale, diameterFromBoxSize
from .train_start import pickerStart


class TrainSettings:
    """Engine settings of the train protocol, from its form (mixed in before the base class)."""

    def _trainDeviceArgs(self):
        """``--device``/``--devices`` and ``--threads`` of a training step: all the step's GPUs
        (data-parallel), its first GPU, or the CPU in one or more processes (each with its share
        of the step's threads)."""
        threads = self._engineThreads(len(self._members()))
        if self._usesGpuDevice():
            option = "--devices" if self.dataParallel.get() else "--device"
            return [option, self._getDeviceArg(), "--threads", str(threads)]
        processes = self.cpuProcesses.get() or 1
        if processes == 1:
            return ["--device", DEVICE_CPU, "--threads", str(threads)]
        perProcess = max(1, threads // processes) if threads else 0
        return ["--devices", ",".join([DEVICE_CPU] * processes), "--threads", str(perProcess)]

    def _trainProcesses(self):
        """Processes each training step runs in, where the form fixes it (None: it depends on
        how Scipion shares the GPUs among parallel steps)."""
        if not self._usesGpuDevice():
            return self.cpuProcesses.get() or 1
        if not self.dataParallel.get():
            return 1
        if (self.numberOfThreads.get() or 1) <= 1:
            return len(self.getGpuList())
        return None

    def _calibrationFoldErrors(self, labelled):
        """Calibration folds that the training micrographs left after the validation split cannot fill."""
        try:
            train = self._engineConfig(1)["train"]
            return engine.calibrationFoldErrors(int(train["calibration_folds"]), labelled,
                                                float(train["valid_fraction"]))
        except (ValueError, KeyError, TypeError):
            return []  # said by the configuration's own check

    def _processErrors(self):
        """A batch that the training processes of a step cannot share out equally."""
        processes = self._trainProcesses()
        if not processes or processes == 1:
            return []
        try:
            batch = self._engineConfig(1)["train"]["batch_size"]
        except (ValueError, KeyError, TypeError):
            return []  # said by the configuration's own check
        return engine.batchSharingErrors(batch, processes, "training processes of a step (%s)"
                                         % ("GPUs" if self._usesGpuDevice() else "CPU processes"))

    def _targetShape(self):
        return TARGET_SHAPES[self.targetShape.get()]

    def _memberArchitecture(self, member):
        index = self.architecture.get()
        if self.mixArchitectures.get() and self.ensembleSize.get() > 1:
            index = (index + member - 1) % len(ARCHITECTURES)
        return ARCHITECTURES[index]

    def _engineConfig(self, member):
        config = {
            "preprocess": {"working_diameter": self.workingDiameter.get()},
            "target": {"shape": self._targetShape(),
                       "positive_radius": engine.SHAPE_RADII[self._targetShape()],
                       "unlabelled_weight": self.unlabelledWeight.get(),
                       "separation": SEPARATIONS[self.separation.get()]},
            "model": {"architecture": self._memberArchitecture(member),
                      "base_channels": self.baseChannels.get(), "depth": self.depth.get()},
            "loss": {"name": LOSSES[self.loss.get()]},
            "augment": {"preset": AUGMENTATIONS[self.augmentation.get()]},
            "train": {"epochs": self.epochs.get(), "steps_per_epoch": self.stepsPerEpoch.get(),
                      "batch_size": self.batchSize.get(), "patch_size": self.patchSize.get(),
                      "learning_rate": self.learningRate.get(), "patience": self.patience.get(),
                      "valid_fraction": self.validFraction.get(),
                      "calibration_folds": self.calibrationFolds.get(),
                      "seed": self.seed.get() + member - 1},
        }
        return engine.mergeConfig(config, self._getExtraConfig())

    def _engineConfigs(self):
        return [self._engineConfig(member) for member in self._members()]

    def _getDiameterPx(self):
        """Particle diameter in pixels of the input micrographs, or None when unknown."""
        micSet = self.inputMicrographs.get()
        given = self._diameterParamPx(micSet)
        if given != 0:
            return given
        coordSet = self.inputCoordinates.get()
        box = coordSet.getBoxSize() if coordSet is not None else None
        return diameterFromBoxSize(box * coordinateScale(coordSet, micSet)) if box else None

    def _startChoice(self, labelled):
        """What training starts from (START_SCRATCH, START_GENERAL, START_MODEL or START_PICKER),
        "automatic" decided by the number of labelled micrographs."""
        start = self.startFrom.get()
        if start == START_AUTO:
            return START_GENERAL if labelled < GENERAL_START_BELOW else START_SCRATCH
        return start

    def _pickerStart(self):
        """``(--init value, words)`` of the model that picked the input coordinates.

        Raises:
            ValueError: it cannot be found, or is an ensemble (the message says what to choose).
        """
        return pickerStart(self.inputCoordinates, self.getProject(), self.pickRun.get())

    def _initArgs(self, labelled):
        """``--init`` of the engine run: the general model, a model folder, or nothing."""
        start = self._startChoice(labelled)
        if start == START_PICKER:
            return ["--init", self._pickerStart()[0]]
        if start == START_MODEL and self.initModel.get() is not None:
            return ["--init", os.path.abspath(self.initModel.get().getPath())]
        return ["--init", engine.GENERAL_MODEL] if start == START_GENERAL else []

    def _startText(self, labelled):
        """The start of training in words, for the summary."""
        start, model = self._startChoice(labelled), self.initModel.get()
        if start == START_PICKER:
            return self._pickerStart()[1]
        if start == START_MODEL and model is not None:
            text = "model %s (%s)" % (model.getObjLabel() or model.getObjId(), model.getPath())
        else:
            text = "the general model" if start == START_GENERAL else "random weights (scratch)"
        if self.startFrom.get() == START_AUTO:
            text += ", chosen automatically for %d labelled micrograph(s)" % labelled
        return text

    def _startErrors(self):
        """Form errors of "Start from": no starting model, an unusable one, or no model that
        picked the input coordinates."""
        start = self.startFrom.get()
        if start == START_MODEL:
            model = self.initModel.get()
            return (["Choose the starting model (Start from = a model)."] if model is None
                    else engine.checkModelFolder(model.getPath()))
        if start != START_PICKER:
            return []
        try:
            init = self._pickerStart()[0]
        except ValueError as exc:
            return [str(exc)]
        return [] if init == engine.GENERAL_MODEL else engine.checkModelFolder(init)

    def _diameterErrors(self):
        return self._particleDiameterErrors(
            self._getDiameterPx(), self.inputMicrographs.get(),
            "Set the particle diameter: it is 0 and the input coordinates have no box size to take it from.")
