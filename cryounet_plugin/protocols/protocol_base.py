"""Helpers shared by the CryoUNet protocols (a mixin placed before the Scipion base class)."""
import json
import os
import shlex
from collections import OrderedDict

import pyworkflow.protocol.params as params
from pyworkflow.protocol.constants import LEVEL_ADVANCED
from pyworkflow.constants import BETA
from cryounet.errors import CryoUNetError
from cryounet.io.atomic import write_json, write_text_atomic
from cryounet.io.mrc import micrograph_shape

from .. import Plugin
from ..constants import (DEVICE_CPU, ENGINE_COMMAND, ENGINE_CONFIG, GPU_PLACEHOLDER,
                         INPUTS_INFO, MICS_FOLDER, MICS_LIST, MRC_SUFFIXES)
from ..convert import (checkMrcHeader, linkFile, matchMicrographs, micrographStem,
                       parseExtraConfig, writeMicrographList)

#: How many offending items an error message lists before "and N more".
_LIST_LIMIT = 5


def listSome(items, limit=_LIST_LIMIT):
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    if len(items) > limit:
        text += " and %d more" % (len(items) - limit)
    return text


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
        """Hidden GPU parameters, shown by Scipion in the form's header row ("Use GPU",
        "GPU IDs"; hidden parameters get no label of their own)."""
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True,
                       help="Yes: run the network on the GPU(s) listed in 'GPU IDs' (CUDA). "
                            "No: run on the CPU (much slower; fine for small data sets).")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0",
                       help="GPU ids (as nvidia-smi numbers them) separated by spaces, e.g. "
                            "'0 1'. Scipion hands each step its own GPU from this list; to run "
                            "several steps at once (ensemble members, picking batches) give the "
                            "protocol one thread more than GPUs. On a queue, the job asks for "
                            "as many GPUs as listed here.")

    def _defineExtraConfigParam(self, form):
        form.addParam("extraConfig", params.StringParam, default="",
                      expertLevel=LEVEL_ADVANCED,
                      label="Extra engine options (JSON)",
                      help="Engine settings not on this form, as a JSON object of sections, e.g. "
                           '{"train": {"time_limit_minutes": 60}, "target": {"shape": '
                           '"gaussian"}}. Sections: preprocess, target, model, loss, augment, '
                           "train, pick, refine (see cryounet/config.py). They "
                           "override the values of this form.")

    # ================================================================== GPUs
    def getGpuList(self):
        """No GPUs when the user chose the CPU, so a queue job does not ask for any."""
        if not self.usesGpu():
            return []
        return super().getGpuList()

    def _usesGpuDevice(self):
        return bool(self.usesGpu() and self.getGpuList())

    def _getDeviceArg(self):
        """``--device`` value: the GPU placeholder the executor fills in, or ``cpu``."""
        return GPU_PLACEHOLDER if self._usesGpuDevice() else DEVICE_CPU

    # ================================================================== engine runs
    def _getExtraConfig(self):
        return parseExtraConfig(self.extraConfig.get() if hasattr(self, "extraConfig") else "")

    def _engineConfigPath(self, tag):
        """extra/cryounet_<tag>.json: the engine configuration of step ``tag``."""
        return self._getExtraPath(ENGINE_CONFIG % tag)

    def _writeEngineConfig(self, tag, config):
        path = self._engineConfigPath(tag)
        write_json(path, config)
        return path

    def _runEngine(self, subcommand, args, tag, commandFile=None):
        """Run an engine command, keeping its command line in extra/cryounet_<tag>.cmd (or
        ``commandFile``), with the first GPU of the protocol in place of the placeholder.

        A failing engine run raises RuntimeError with the engine's own ``error:`` line when it
        can be found in the run log.
        """
        shown = [a if a != GPU_PLACEHOLDER else str((self.getGpuList() or [0])[0]) for a in args]
        program = shlex.quote(Plugin.getPython())
        write_text_atomic(commandFile or self._getExtraPath(ENGINE_COMMAND % tag),
                          "%s -m cryounet %s %s\n" % (program, subcommand,
                                                        " ".join(shlex.quote(str(a)) for a in shown)))
        try:
            Plugin.runCryounet(self, subcommand, args)
        except Exception as exc:
            reason = self._findEngineError(subcommand)
            raise EngineError(subcommand, reason, exc) from exc

    def _engineLogLines(self, marker):
        """Lines of this run's logs (stdout and stderr) containing ``marker``."""
        found = []
        for log in (self.getStdoutLog(), self.getStderrLog()):
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
    @staticmethod
    def _micrographItems(micSet):
        """``[(id, file name, micName)]`` of a micrograph set, in set order."""
        return [(mic.getObjId(), mic.getFileName(), mic.getMicName())
                for mic in micSet.iterItems()]

    @staticmethod
    def _nonMrcFiles(items):
        return [fn for _, fn, _ in items
                if os.path.splitext(fn)[1].lower() not in MRC_SUFFIXES]

    @staticmethod
    def _unreadableMicrographs(items):
        """``[(file name, problem)]`` of micrographs whose MRC header or size is wrong."""
        bad = []
        for _, fn, _ in items:
            problem = checkMrcHeader(fn)
            if problem:
                bad.append((fn, problem))
        return bad

    @classmethod
    def _requireReadableMrc(cls, items, where):
        """Raise ValueError naming ``where`` unless every micrograph is a readable MRC file."""
        nonMrc = cls._nonMrcFiles(items)
        if nonMrc:
            raise ValueError("CryoUNet reads MRC micrographs only; convert these first: %s"
                             % listSome(nonMrc))
        bad = cls._unreadableMicrographs(items)
        if bad:
            raise ValueError("Unreadable micrograph(s) in %s: %s. Remove them from the set "
                             "(e.g. with a subset) and run again."
                             % (where, listSome("%s %s" % b for b in bad)))

    @staticmethod
    def _smallestMicrographSide(micSet):
        """Smallest side (px) of the first micrograph of a set, or None when unreadable."""
        first = micSet.getFirstItem()
        if first is None:
            return None
        try:
            return min(micrograph_shape(first.getFileName()))
        except CryoUNetError:
            return None

    def _linkMicrographs(self, items, stems, tag, folder=None):
        """Symlink micrographs under unique stems and write the engine's ``@list`` file.

        Args:
            items: ``[(id, file name, micName)]``.
            stems: dict id -> unique stem.
            tag: names the list file (extra/micrographs_<tag>.txt).
            folder: where the links go (default extra/micrographs).
        Returns:
            (list file path, dict id -> link path).
        """
        folder = folder or self._getExtraPath(MICS_FOLDER)
        links = OrderedDict()
        for micId, fn, _ in items:
            links[micId] = linkFile(fn, os.path.join(folder, stems[micId] + ".mrc"))
        listPath = self._getExtraPath(MICS_LIST % tag)
        writeMicrographList(listPath, [os.path.abspath(p) for p in links.values()])
        return listPath, links

    # ================================================================== coordinates
    @staticmethod
    def _coordinateGroups(coordSet, scoreAttr=None, spreadAttr=None):
        """Coordinates grouped by micrograph id.

        Returns:
            OrderedDict micId -> dict(name=micName, xy=[(x, y)], scores=[...], spread=[...])
            (scores/spread lists only filled when the attribute names are given).
        """
        groups = OrderedDict()
        for coord in coordSet.iterItems():
            micId = coord.getMicId()
            group = groups.get(micId)
            if group is None:
                group = groups[micId] = {"name": coord.getMicName(), "xy": [], "scores": [],
                                         "spread": []}
            group["xy"].append((coord.getX(), coord.getY()))
            if scoreAttr:
                value = getattr(coord, scoreAttr, None)
                group["scores"].append(value.get() if value is not None else None)
            if spreadAttr:
                value = getattr(coord, spreadAttr, None)
                group["spread"].append(value.get() if value is not None else None)
        return groups

    @staticmethod
    def _coordinateMicrographKeys(coordSet):
        """dict micId -> micName of the micrographs referenced by a coordinate set (SQL query)."""
        values = coordSet.getUniqueValues(["_micId", "_micName"])
        return OrderedDict(zip(values["_micId"], values["_micName"]))

    @staticmethod
    def _matchCoordinates(items, coordKeys):
        """Match coordinate micrograph ids to a micrograph list (ids first, then names)."""
        return matchMicrographs(OrderedDict((mid, name) for mid, _, name in items), coordKeys)

    # ================================================================== info helpers
    def _inputsFile(self):
        return self._getExtraPath(INPUTS_INFO)

    def _saveInputsInfo(self, info):
        write_json(self._inputsFile(), info)

    def _loadInputsInfo(self):
        try:
            with open(self._inputsFile()) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def _gpuWarnings(self, what):
        if not self._usesGpuDevice():
            return ["%s runs on the CPU ('Use GPU' is No): expect it to be much slower than on "
                    "a GPU." % what]
        return []

    def _extraConfigErrors(self):
        try:
            self._getExtraConfig()
        except ValueError as exc:
            return [str(exc)]
        return []

    @staticmethod
    def _stemOf(path):
        return micrographStem(path)
