"""Helpers shared by the CryoUNet protocols (a mixin placed before the Scipion base class)."""
import json
import os
from collections import OrderedDict

import pyworkflow.protocol.params as params
from pyworkflow.protocol.constants import LEVEL_ADVANCED
from pyworkflow.constants import BETA

from .. import Plugin, engine
from ..constants import (DEVICE_CPU, DIAMETER_UNITS, ENGINE_COMMAND, ENGINE_CONFIG, GPU_PLACEHOLDER,
                         INPUTS_INFO, MICS_FOLDER, MICS_LIST, UNIT_ANGSTROM, UNIT_PIXELS)
from ..convert import diameterInPixels, samePixelSize
from .sets import linkFile, smallestMicrographSide, writeMicrographList

#: What pyworkflow's queue executor says when a job submission is refused.
QUEUE_REFUSED = "Failed to submit to queue"
#: Projects whose forms said, in this Scipion session, that CryoUNet runs on the CPU.
CPU_NOTED = set()


class EngineError(RuntimeError):
    """A failed engine run; ``reason`` is the engine's own error message when known."""

    def __init__(self, subcommand, reason, cause):
        self.subcommand = subcommand
        self.reason = reason
        super().__init__("cryounet %s failed: %s" % (
            subcommand, reason or "%s (see the run log for the engine's messages)" % cause))


class CryoUnetProtBase:
    """Mixin with the GPU, engine-run, micrograph and coordinate helpers of CryoUNet protocols.

    Not a protocol itself: each protocol combines it with ``EMProtocol`` or a pwem base class
    (``class CryoUnetProtTrain(CryoUnetProtBase, EMProtocol)``).
    """
    _devStatus = BETA

    # ================================================================== params
    def _defineDeviceParams(self, form):
        """Hidden GPU parameters, shown by Scipion in the form's header row "GPU IDs" (Yes/No,
        then the ids; hidden parameters get no label of their own). Yes by default unless this
        machine certainly has no CUDA GPU (no NVIDIA driver), where it is No, with a note."""
        noGpu = engine.cudaImpossible()
        note = (" This machine has no NVIDIA driver, hence no CUDA GPU: No is the default here."
                if noGpu else "")
        form.addHidden(params.USE_GPU, params.BooleanParam, default=not noGpu,
                       help="Yes: run the network on the GPU(s) of 'GPU IDs' (CUDA). No: run on "
                            "the CPU (slower; fine for small data sets)." + note)
        form.addHidden(params.GPU_LIST, params.StringParam, default="0",
                       help="GPU IDs: Yes runs the network on the GPUs listed (ids as nvidia-smi "
                            "numbers them, separated by spaces, e.g. '0 1'); No runs it on the "
                            "CPU." + note + " Scipion hands each step its own GPU from this list; "
                            "to run several steps at once (ensemble members, picking batches) give "
                            "the protocol one thread more than GPUs. On a queue, the job asks for "
                            "as many GPUs as listed here.")

    def _defineDiameterParams(self, form, zeroMeans):
        """'Diameter unit' and 'Particle diameter' (px or A; 0 = ``zeroMeans``)."""
        form.addParam("diameterUnit", params.EnumParam, choices=DIAMETER_UNITS,
                      default=UNIT_PIXELS, display=params.EnumParam.DISPLAY_HLIST,
                      label="Diameter unit",
                      help="Unit of the particle diameter below: pixels of the input "
                           "micrographs, or Angstrom (converted with their sampling rate).")
        form.addParam("particleDiameter", params.FloatParam, default=0,
                      validators=[params.GE(0)],
                      label="Particle diameter",
                      help="Particle diameter in the unit above (pixels or Angstrom): the longest "
                           "dimension of the particle, not the extraction box. 0 = %s" % zeroMeans)

    def _diameterParamPx(self, micSet):
        """The form's particle diameter in pixels of ``micSet``; 0 when not given, None when it is
        in Angstrom and the micrographs have no sampling rate."""
        value = self.particleDiameter.get() or 0
        if value <= 0:
            return 0
        try:
            return diameterInPixels(value, self.diameterUnit.get(),
                                    micSet.getSamplingRate() if micSet is not None else None)
        except ValueError:
            return None

    def _particleDiameterErrors(self, diameter, micSet, missing):
        """Why a particle diameter (px) cannot be used: unknown (``missing``, or no sampling rate for
        a diameter in Angstrom), out of the engine's range, or not smaller than the micrographs."""
        if diameter is None or diameter <= 0:
            if self.diameterUnit.get() == UNIT_ANGSTROM and self.particleDiameter.get():
                return ["The input micrographs have no sampling rate: give the diameter in pixels."]
            return [missing]
        side = smallestMicrographSide(micSet) if micSet is not None else None
        if side and diameter >= side:
            return ["Particle diameter %.1f px is not smaller than the micrographs (%d px): check "
                    "the diameter and its unit." % (diameter, side)]
        return engine.diameterErrors(diameter)

    def _defineExtraConfigParam(self, form):
        form.addParam("extraConfig", params.StringParam, default="",
                      expertLevel=LEVEL_ADVANCED,
                      label="Extra engine options (JSON)",
                      help="Engine settings not on this form, as a JSON object of sections, e.g. "
                           '{"train": {"time_limit_minutes": 60}, "target": {"shape": '
                           '"gaussian"}}. Sections: %s (see cryounet/config.py). They '
                           "override the values of this form and are checked when the form "
                           "is validated." % ", ".join(engine.CONFIG_SECTIONS))

    # ================================================================== GPUs
    def getGpuList(self):
        """No GPUs when the user chose the CPU, so a queue job does not ask for any."""
        if not self.usesGpu():
            return []
        return super().getGpuList()

    def _usesGpuDevice(self):
        return bool(self.usesGpu() and self.getGpuList())

    def _engineThreads(self, parallelSteps=1):
        """``--threads`` of each engine run: the protocol's threads shared by the steps that run at
        once (Scipion runs up to threads - 1 steps in parallel), at least 1, so that a queue job
        uses the cores it asked for (torch would take every core of the node). A local run left at
        the default of 1 thread gets 0: torch's own choice (every core of this machine)."""
        threads = max(1, self.numberOfThreads.get() or 1)
        if threads == 1 and not self.useQueue():
            return 0
        concurrent = 1 if threads == 1 else max(1, min(parallelSteps, threads - 1))
        return max(1, threads // concurrent)

    def _getDeviceArg(self):
        """``--device`` value: the GPU placeholder the executor fills in, or ``cpu``."""
        return GPU_PLACEHOLDER if self._usesGpuDevice() else DEVICE_CPU

    # ================================================================== engine runs
    def _getExtraConfig(self):
        return engine.parseExtraConfig(self.extraConfig.get() if hasattr(self, "extraConfig") else "")

    def _engineConfigPath(self, tag):
        """extra/cryounet_<tag>.json: the engine configuration of step ``tag``."""
        return self._getExtraPath(ENGINE_CONFIG % tag)

    def _writeEngineConfig(self, tag, config):
        path = self._engineConfigPath(tag)
        engine.writeJson(path, config)
        return path

    def _runEngine(self, subcommand, args, tag, commandFile=None):
        """Run an engine command, keeping its command line in extra/cryounet_<tag>.cmd (or
        ``commandFile``), with the first GPU of the protocol in place of the placeholder.

        A failing engine run raises RuntimeError with the engine's own ``error:`` line when it
        can be found in the run log.
        """
        engine.writeTextAtomic(commandFile or self._getExtraPath(ENGINE_COMMAND % tag),
                               engine.recordedCommandLine(Plugin.getPython(), subcommand, args,
                                                          GPU_PLACEHOLDER, (self.getGpuList() or [0])[0]))
        try:
            Plugin.runCryounet(self, subcommand, args)
        except Exception as exc:
            if QUEUE_REFUSED in str(exc):  # the engine never ran: say so, not "cryounet failed"
                raise RuntimeError("The queue did not accept the job of cryounet %s (check the queue "
                                   "parameters, e.g. the GPUs asked for): %s" % (subcommand, exc)) from exc
            reason = self._findEngineError(subcommand)
            raise EngineError(subcommand, reason, exc) from exc
        # A queue job that ends is "done" to Scipion whatever its exit code: the engine's own
        # completion mark on its output folder tells whether it finished.
        output = args[args.index("--output") + 1] if "--output" in args else None
        if output and not engine.runCompleted(output):
            raise EngineError(subcommand, self._findEngineError(subcommand),
                              "the engine did not finish %s" % output)

    def _engineLogs(self):
        """This run's logs, then the output files of its queue jobs (``*.out``/``*.err`` beside the
        job scripts, where a hosts.conf template that uses JOB_LOGS sends them), oldest first."""
        folder = self._getLogsPath()
        jobs = [os.path.join(folder, name) for name in os.listdir(folder)
                if name.endswith((".out", ".err"))] if os.path.isdir(folder) else []
        return [self.getStdoutLog(), self.getStderrLog()] + sorted(jobs, key=os.path.getmtime)

    def _engineLogLines(self, marker):
        """Lines of this run's logs and job outputs containing ``marker`` (the newest last)."""
        found = []
        for log in self._engineLogs():
            try:
                with open(log, errors="replace") as handle:
                    found += [line.strip() for line in handle if marker in line]
            except OSError:
                continue
        return found

    def _findEngineError(self, subcommand):
        """The last ``cryounet <subcommand>: error:`` line of this run's logs, or None."""
        marker = "cryounet %s: error:" % subcommand
        lines = self._engineLogLines(marker)
        return lines[-1].split(marker, 1)[1].strip() if lines else None

    # ================================================================== micrographs
    def _linkMicrographs(self, items, stems, tag, folder=None, listPath=None):
        """Symlink micrographs under unique stems and write the engine's ``@list`` file.

        Args:
            items: ``[(id, file name, micName)]``.
            stems: dict id -> unique stem.
            tag: names the list file (extra/micrographs_<tag>.txt, unless ``listPath``).
            folder: where the links go (default extra/micrographs).
        Returns:
            (list file path, dict id -> link path).
        """
        folder = folder or self._getExtraPath(MICS_FOLDER)
        links = OrderedDict()
        for micId, fn, _ in items:
            links[micId] = linkFile(fn, os.path.join(folder, stems[micId] + ".mrc"))
        listPath = listPath or self._getExtraPath(MICS_LIST % tag)
        writeMicrographList(listPath, [os.path.abspath(p) for p in links.values()])
        return listPath, links

    # ================================================================== info helpers
    def _inputsFile(self):
        return self._getExtraPath(INPUTS_INFO)

    def _saveInputsInfo(self, info):
        engine.writeJson(self._inputsFile(), info)

    def _loadInputsInfo(self):
        try:
            with open(self._inputsFile()) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _pixelSizeWarnings(model, micSet, what="these micrographs"):
        """A warning when ``micSet`` is not at the pixel size ``model`` was trained at (its
        diameter in pixels would not fit)."""
        if micSet is None or samePixelSize(model.getSamplingRate(), micSet.getSamplingRate()):
            return []
        return ["Model %s was trained on micrographs of %.3f A/px but %s have %.3f A/px: its %.1f px "
                "particle diameter will not fit. Use micrographs at the training pixel size."
                % (model.getObjLabel() or model.getObjId(), model.getSamplingRate(), what,
                   micSet.getSamplingRate(), model.getDiameter())]

    def _gpuWarnings(self, what):
        if not self._usesGpuDevice():
            return self._cpuNote(what)
        if self.useQueue() and self._visibleGpus() == 0:
            return ["'GPU IDs' is Yes and this machine has no CUDA GPU: the queue's nodes must have "
                    "one (the job asks for %d)." % len(self.getGpuList())]
        return []

    def _cpuNote(self, what):
        """That the run uses the CPU: said once per project in a Scipion session (the first CPU
        run's form), not before every run."""
        project = self.getProject()
        key = project.getPath() if project is not None else ""
        if key in CPU_NOTED:
            return []
        CPU_NOTED.add(key)
        why = ", as this machine has no CUDA GPU" if engine.cudaImpossible() else " ('GPU IDs' is No)"
        return ["%s runs on the CPU%s: slower than on a GPU. CryoUNet says this once per session."
                % (what, why)]

    @staticmethod
    def _visibleGpus():
        """CUDA GPUs the engine sees here: none without the NVIDIA driver (no torch import), else
        the engine's own count (None when it cannot tell)."""
        return 0 if engine.cudaImpossible() else Plugin.visibleGpuCount()

    def _gpuErrors(self):
        """'GPU IDs' = Yes where the run happens here (no queue) on a machine whose engine sees
        no CUDA GPU: said when the form is validated, not when the engine fails."""
        if not self._usesGpuDevice() or self.useQueue():
            return []
        count = self._visibleGpus()
        if count == 0:
            return ["'GPU IDs' is Yes but the CryoUNet engine (%s) sees no CUDA GPU on this machine: "
                    "set 'GPU IDs' to No to run on the CPU, or submit the run to a GPU queue."
                    % Plugin.getPython()]
        wanted = [int(g) for g in self.getGpuList() if str(g).isdigit()]
        if count and wanted and max(wanted) >= count:
            return ["'GPU IDs' lists GPU %d but this machine has %d CUDA GPU(s) (0 to %d)."
                    % (max(wanted), count, count - 1)]
        return []

    def _engineConfigErrors(self):
        """Form errors of the engine configuration the form produces (its values and the extra
        engine options), checked with the engine's own loader before anything runs."""
        try:
            for config in self._engineConfigs():
                engine.validateConfig(config, "the engine options of this form")
        except ValueError as exc:
            return [str(exc)]
        return []

    def _engineConfigs(self):
        """The engine configuration(s) this protocol's steps will write (one per engine run)."""
        return [self._engineConfig()]
