"""Shared helpers of the CryoUNet Scipion tests: small simulated data, project helpers.

The data come from the engine itself (``python -m cryounet simulate``): noisy synthetic
micrographs with known particle centres, written as ``mic_NNN.mrc`` + ``mic_NNN.star``.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np

from pyworkflow.tests import BaseTest, setupTestProject
from cryounet.io.coordinates import read_coordinates, read_star_index

from cryounet_plugin import engine
from cryounet_plugin.constants import COORDS_FOLDER, SCORE_ATTR, SPREAD_ATTR
from cryounet_plugin.engine import COORDS_INDEX

#: Simulated data: micrograph side, particle diameter (px), pixel size (A/px).
SIM_SIZE = 256
SIM_DIAMETER = 24
SIM_PIXEL = 2.0
#: Box size of the simulated coordinates: the engine's box for that diameter (36 px).
SIM_BOX = engine.boxSizeFromDiameter(SIM_DIAMETER)
#: What pyworkflow writes when a running protocol's process (or queue job) is gone.
DEAD_PROCESS = "not found running on the"

#: Engine settings that make training take seconds on a CPU (tests only).
TINY_ENGINE = {
    "train": {"steps_per_epoch": 2, "batch_size": 2, "patch_size": 32, "warmup_epochs": 0,
              "num_threads": 1},
    "model": {"base_channels": 4, "depth": 2},
    "augment": {"preset": "none"},
}
#: Refinement settings for tests: no test-time augmentation (8x cheaper pseudo-labelling).
TINY_REFINE = {"refine": {"tta": False}, "train": {"num_threads": 1}}

#: Where the real CryoPPP excerpts live (relative to the repository root), when present.
SHARED_DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..",
                                            "shared", "data"))


def tinyConfigJson(extra=None):
    config = json.loads(json.dumps(TINY_ENGINE))
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    return json.dumps(config)


def simulate(folder, micrographs=6, size=SIM_SIZE, diameter=SIM_DIAMETER, particles=25,
             seed=0, snr=0.3):
    """Write simulated micrographs + STAR coordinates into ``folder`` with the engine's CLI."""
    cmd = [sys.executable, "-m", "cryounet", "simulate", "--output", folder,
           "--micrographs", str(micrographs), "--size", str(size), "--diameter", str(diameter),
           "--particles", str(particles), "--seed", str(seed), "--snr", str(snr),
           "--pixel-size", str(SIM_PIXEL), "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return folder


def trainModelWithCli(micrographs, coordinates, output, diameter=SIM_DIAMETER, epochs=1):
    """Train a tiny model directly with the engine's CLI (setup of tests that need a model)."""
    config = output.rstrip("/") + "_config.json"
    with open(config, "w") as handle:
        handle.write(tinyConfigJson({"train": {"epochs": epochs}}))
    cmd = [sys.executable, "-m", "cryounet", "train", "--micrographs", micrographs,
           "--coordinates", coordinates, "--diameter", str(diameter), "--output", output,
           "--config", config, "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("cryounet train failed: %s" % proc.stderr[-2000:])
    return output


def logTail(prot, lines=40):
    text = []
    for name in (prot.getStdoutLog(), prot.getStderrLog()):
        path = os.path.join(prot.getProject().getPath(), name) if not os.path.isabs(name) else name
        if os.path.exists(path):
            with open(path, errors="replace") as handle:
                text.append("---- %s\n%s" % (name, "".join(handle.readlines()[-lines:])))
    return "\n".join(text)


class CryoUnetTestBase(BaseTest):
    """A test class with its own Scipion project (in SCIPION_USER_DATA set by conftest.py)."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.dataDir = os.path.join(cls.proj.getPath(), "testdata")
        os.makedirs(cls.dataDir, exist_ok=True)

    # ------------------------------------------------------------------ launching
    @classmethod
    def runProt(cls, prot):
        """Launch and wait (also for a protocol sent to a queue as one job, which launching does not
        wait for); fail with the run's log tail when it does not finish."""
        cls.proj.launchProtocol(prot, wait=True)
        if prot.isActive():
            cls.waitFor(prot)
        if not prot.isFinished():
            raise AssertionError("%s did not finish (%s): %s\n%s" % (
                prot.getRunName(), prot.getStatus(), prot.getErrorMessage(), logTail(prot)))
        return prot

    @classmethod
    def runExpectingFailure(cls, prot):
        cls.proj.launchProtocol(prot, wait=True)
        if prot.isActive():
            cls.waitFor(prot)
        if not prot.isFailed():
            raise AssertionError("%s should have failed but is %s\n%s"
                                 % (prot.getRunName(), prot.getStatus(), logTail(prot)))
        return prot

    @classmethod
    def update(cls, prot):
        """Bring ``prot`` up to date from its own run database, as the Scipion GUI does.

        ``Project._updateProtocol`` reads run.db, then its modification time, then checks that the
        process is alive. A run's last write that falls between the first two is never read (the
        time says up to date), and once the process has ended the run is marked failed: "Process
        N not found running on the machine" (pyworkflow 3.11.7; it failed a streaming pick in CI),
        or for a queue job "JOB ID N not found running on the queue engine".
        On that message the run database, final now that the process has gone, is read again: a
        run that really died still says running there and fails the same way.
        """
        cls.proj._updateProtocol(prot)
        if prot.isFailed() and DEAD_PROCESS in (prot.getErrorMessage() or ""):
            prot.lastUpdateTimeStamp.set(None)  # forces the reload
            cls.proj._updateProtocol(prot)

    @classmethod
    def waitFor(cls, prot, timeout=300, poll=1.0):
        """Wait for a protocol launched with wait=False to end (any final state)."""
        start = time.time()
        while time.time() - start < timeout:
            cls.update(prot)
            if not prot.isActive():
                return prot
            time.sleep(poll)
        raise AssertionError("%s still %s after %d s\n%s"
                             % (prot.getRunName(), prot.getStatus(), timeout, logTail(prot)))

    # ------------------------------------------------------------------ inputs
    @classmethod
    def importMicrographs(cls, folder, pattern="*.mrc", samplingRate=SIM_PIXEL, **kwargs):
        from pwem.protocols import ProtImportMicrographs
        prot = cls.newProtocol(ProtImportMicrographs, filesPath=folder, filesPattern=pattern,
                               samplingRate=samplingRate, voltage=300,
                               sphericalAberration=2.7, **kwargs)
        return prot

    @classmethod
    def importCoordinates(cls, micsProt, folder, boxSize, pattern="*.star"):
        from cryounet_plugin.protocols import CryoUnetProtImportCoordinates
        prot = cls.newProtocol(CryoUnetProtImportCoordinates, filesPath=folder,
                               filesPattern=pattern, boxSize=boxSize)
        prot.inputMicrographs.set(micsProt)
        prot.inputMicrographs.setExtended("outputMicrographs")
        return cls.runProt(prot)


# ---------------------------------------------------------------------- checks
def assertCoordinatesMatchStar(testCase, prot, coordSet, scoreAttr=SCORE_ATTR, spread=False):
    """Every coordinate of ``coordSet`` equals (rounded) a row of its micrograph's STAR file in
    the run's extra/coordinates, with the same score; the index lists those files; every file
    parses with ``starfile``. Returns the number of coordinates checked."""
    import starfile

    coordsDir = prot._getExtraPath(COORDS_FOLDER)
    indexPath = os.path.join(coordsDir, COORDS_INDEX)
    parsedIndex = list(starfile.read(indexPath, always_dict=True).values())[0]
    index = list(zip(parsedIndex["rlnMicrographName"], parsedIndex["rlnMicrographCoordinates"]))
    # the engine's reader of the index agrees with starfile
    testCase.assertEqual(read_star_index(indexPath),
                         {os.path.splitext(os.path.basename(c))[0]: m for m, c in index})
    micFiles = {mic.getFileName(): mic.getObjId() for mic in coordSet.getMicrographs()}
    byMic = {}
    for coord in coordSet.iterItems():
        score = getattr(coord, scoreAttr).get()
        spreadValue = getattr(coord, SPREAD_ATTR).get() if spread else None
        byMic.setdefault(coord.getMicId(), []).append((coord.getX(), coord.getY(), score,
                                                       spreadValue))
    total = 0
    for micFile, starPath in index:
        testCase.assertIn(micFile, micFiles, "index lists an unknown micrograph %s" % micFile)
        picks = read_coordinates(starPath)
        xy, scores, spreadCol = picks.xy, picks.scores, picks.uncertainty
        parsed = starfile.read(starPath, always_dict=True)
        table = list(parsed.values())[0]
        if len(xy):
            np.testing.assert_allclose(table["rlnCoordinateX"].to_numpy(), xy[:, 0])
            np.testing.assert_allclose(table["rlnAutopickFigureOfMerit"].to_numpy(), scores)
        rows = sorted((int(np.floor(x + 0.5)), int(np.floor(y + 0.5)), s) for (x, y), s in
                      zip(xy, scores if scores is not None else [None] * len(xy)))
        coords = sorted((x, y, s) for x, y, s, _ in byMic.get(micFiles[micFile], []))
        testCase.assertEqual(len(rows), len(coords), "count differs for %s" % micFile)
        for (x1, y1, s1), (x2, y2, s2) in zip(rows, coords):
            testCase.assertEqual((x1, y1), (x2, y2))
            testCase.assertAlmostEqual(s1, s2, places=5)
        if spread:
            testCase.assertIsNotNone(spreadCol, "%s has no spread column" % starPath)
            testCase.assertTrue(all(np.isfinite(spreadCol)))
        total += len(rows)
    testCase.assertEqual(total, coordSet.getSize())
    return total


def copyMicrographs(source, target, names):
    os.makedirs(target, exist_ok=True)
    for name in names:
        shutil.copy(os.path.join(source, name), os.path.join(target, name))


# ---------------------------------------------------------------------- fault injection
#: CRYOUNET_PYTHON wrapper that kills, once, the engine run whose micrograph list names
#: $KILL_STEM: it starts the engine ($REAL_PYTHON), waits for its first STAR file (or its end),
#: then SIGKILLs it and itself. Removing $KILL_FLAG disarms it; other runs go straight through.
KILL_ONCE_WRAPPER = textwrap.dedent("""\
    #!/bin/bash
    # Kill the engine run whose micrograph list names $KILL_STEM, once (while $KILL_FLAG exists).
    list=""; out=""; prev=""
    for a in "$@"; do
      [ "$prev" = "--micrographs" ] && list="${a#@}"
      [ "$prev" = "--output" ] && out="$a"
      prev="$a"
    done
    if [ -e "$KILL_FLAG" ] && [ -n "$list" ] && grep -q "$KILL_STEM" "$list"; then
      rm -f "$KILL_FLAG"
      "$REAL_PYTHON" "$@" &
      engine=$!
      for i in $(seq 1 600); do
        ls "$out"/*.star >/dev/null 2>&1 && break
        kill -0 $engine 2>/dev/null || break
        sleep 0.05
      done
      kill -9 $engine 2>/dev/null
      kill -9 $$
    fi
    exec "$REAL_PYTHON" "$@"
    """)


def writeKillOnceWrapper(path):
    """Write :data:`KILL_ONCE_WRAPPER` to ``path`` (executable); returns the path."""
    with open(path, "w") as handle:
        handle.write(KILL_ONCE_WRAPPER)
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path
