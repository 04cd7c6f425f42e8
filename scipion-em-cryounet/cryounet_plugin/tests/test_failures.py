"""Failure paths in a real Scipion project: clear messages, no partial outputs.

* training with coordinates that belong to none of the input micrographs;
* training with a particle diameter larger than the micrographs;
* training on a set with a corrupt (truncated) micrograph;
* picking a set with a truncated micrograph and one full of NaN: both are skipped with a
  warning, the others are picked.
"""
import json
import os
import shutil

import mrcfile
import numpy as np
import pytest

from cryounet_plugin.constants import SCORE_ATTR
from cryounet_plugin.protocols import (CryoUnetProtImportModel, CryoUnetProtPick,
                                       CryoUnetProtTrain)
from cryounet_plugin.tests.common import (SIM_BOX, CryoUnetTestBase,
                                          assertCoordinatesMatchStar, simulate, tinyConfigJson,
                                          trainModelWithCli)

pytestmark = pytest.mark.scipion


def truncate(path):
    """Cut an MRC file in half: the header stays valid, the data are missing."""
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(1024 + (size - 1024) // 2)


def fillWithNan(path):
    """Replace the image by NaN (a valid header and size, unusable values)."""
    with mrcfile.open(path, mode="r+") as handle:
        handle.data[...] = np.nan


class TestCryoUnetFailures(CryoUnetTestBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.simA = simulate(os.path.join(cls.dataDir, "a"), micrographs=3, seed=11)
        # a second set of micrographs with other names (ids of separate imports coincide)
        cls.simB = os.path.join(cls.dataDir, "b")
        simulate(cls.simB + "_raw", micrographs=2, seed=12)
        os.makedirs(cls.simB)
        for name in os.listdir(cls.simB + "_raw"):
            if name.startswith("mic_"):
                shutil.copy(os.path.join(cls.simB + "_raw", name),
                            os.path.join(cls.simB, name.replace("mic_", "other_")))
        cls.micsA = cls.runProt(cls.importMicrographs(cls.simA))
        cls.coordsA = cls.importCoordinates(cls.micsA, cls.simA, boxSize=SIM_BOX)
        cls.micsB = cls.runProt(cls.importMicrographs(cls.simB, pattern="other_*.mrc"))
        cls.coordsB = cls.importCoordinates(cls.micsB, cls.simB, boxSize=SIM_BOX)

    def newTrain(self, mics, coords, **kwargs):
        kwargs.setdefault("epochs", 1)
        prot = self.newProtocol(CryoUnetProtTrain, useGpu=False, extraConfig=tinyConfigJson(),
                                **kwargs)
        prot.inputMicrographs.set(mics)
        prot.inputMicrographs.setExtended("outputMicrographs")
        prot.inputCoordinates.set(coords)
        prot.inputCoordinates.setExtended("outputCoordinates")
        return prot

    def assertNoOutputs(self, prot):
        self.update(prot)
        self.assertEqual(prot.getOutputsSize(), 0, list(prot.iterOutputAttributes()))
        self.assertFalse(prot.hasAttribute("outputModel"))

    def test_coordinates_of_other_micrographs(self):
        prot = self.newTrain(self.micsA, self.coordsB)
        errors = prot.validate()
        self.assertTrue(any("None of the input micrographs has coordinates" in e
                            for e in errors), errors)
        # launched anyway (as a script would): the run validates itself and stops
        self.runExpectingFailure(prot)
        self.assertIn("None of the input micrographs has coordinates", prot.getErrorMessage())
        self.assertNoOutputs(prot)

    def test_diameter_larger_than_micrographs(self):
        prot = self.newTrain(self.micsA, self.coordsA, particleDiameter=300)
        errors = prot.validate()
        self.assertTrue(any("not smaller than the micrographs (256 px)" in e for e in errors),
                        errors)
        self.runExpectingFailure(prot)
        self.assertIn("Particle diameter 300.0 px is not smaller than the micrographs (256 px)",
                      prot.getErrorMessage())
        self.assertNoOutputs(prot)
        # the same diameter in Angstrom (300 A = 150 px at 2 A/px) is accepted
        prot = self.newTrain(self.micsA, self.coordsA, particleDiameter=300, diameterUnit=1)
        self.assertEqual(prot.validate(), [])

    def test_corrupt_micrograph_in_training_set(self):
        folder = os.path.join(self.dataDir, "corrupt_train")
        shutil.copytree(self.simA, folder)
        mics = self.runProt(self.importMicrographs(folder))
        coords = self.importCoordinates(mics, folder, boxSize=SIM_BOX)
        truncate(os.path.join(folder, "mic_001.mrc"))
        prot = self.newTrain(mics, coords)
        self.runExpectingFailure(prot)
        message = prot.getErrorMessage()
        self.assertIn("Unreadable micrograph", message)
        self.assertIn("mic_001.mrc: truncated: ", message)
        self.assertNoOutputs(prot)

    def test_use_gpu_without_a_gpu_is_a_form_error(self):
        """'GPU IDs' = Yes on a machine without CUDA fails at validation, naming the form's own
        label, instead of failing in the engine after the run started."""
        from cryounet_plugin import Plugin
        if Plugin.visibleGpuCount():
            pytest.skip("this machine has a CUDA GPU")
        prot = self.newTrain(self.micsA, self.coordsA)
        prot.useGpu.set(True)
        errors = prot.validate()
        self.assertTrue(any("'GPU IDs' is Yes but the CryoUNet engine" in e and "set 'GPU IDs' to No" in e
                            for e in errors), errors)
        self.assertFalse(any("Use GPU" in e for e in errors), errors)
        prot._useQueue.set(True)  # on a queue the nodes may have GPUs: a warning only
        self.assertFalse(any("GPU IDs" in e for e in prot.validate()), prot.validate())
        self.assertTrue(any("the queue's nodes must have one" in w for w in prot.warnings()))
        pick = self.newProtocol(CryoUnetProtPick, useGpu=True)
        pick.inputMicrographs.set(self.micsA)
        pick.inputMicrographs.setExtended("outputMicrographs")
        self.assertEqual(pick._gpuErrors()[0].split(" but ")[0], "'GPU IDs' is Yes")

    def test_gpu_default_follows_the_machine(self):
        """Without the NVIDIA driver every form defaults to the CPU, says why in the GPU help, and
        the note that a run uses the CPU comes once per project in a session, not on every form."""
        from cryounet_plugin import engine
        from cryounet_plugin.protocols import CryoUnetProtRefine
        from cryounet_plugin.protocols.protocol_base import CPU_NOTED
        if not engine.cudaImpossible():
            pytest.skip("this machine has the NVIDIA driver")
        for cls in (CryoUnetProtTrain, CryoUnetProtPick, CryoUnetProtRefine):
            prot = self.newProtocol(cls)
            self.assertFalse(prot.useGpu.get(), cls.__name__)
            self.assertIn("no CUDA GPU: No is the default here", prot.getParam("gpuList").getHelp())
        CPU_NOTED.discard(self.proj.getPath())
        first = self.newTrain(self.micsA, self.coordsA)
        self.assertEqual(first.validate(), [])
        notes = [w for w in first.warnings() if "runs on the CPU" in w]
        self.assertEqual(notes, ["Training runs on the CPU, as this machine has no CUDA GPU: slower "
                                 "than on a GPU. CryoUNet says this once per session."])
        again = self.newTrain(self.micsA, self.coordsA)
        self.assertFalse(any("runs on the CPU" in w for w in again.warnings() + first.warnings()))

    def test_engine_error_reaches_the_protocol(self):
        """A failing engine run (here: model weights full of NaN) ends the protocol with the
        engine's own one-line reason, not a traceback or "see the log"."""
        modelDir = trainModelWithCli(self.simA, self.simA, os.path.join(self.dataDir, "nan_model"))
        from safetensors.torch import load_file, save_file
        import torch
        weights = os.path.join(modelDir, "model.safetensors")
        state = load_file(weights)
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = torch.full_like(state[name], float("nan"))
        save_file(state, weights)
        from cryounet.io.model_folder import record_digests
        record_digests(modelDir, ["model.safetensors"])  # as a run that trained them records them
        importModel = self.runProt(self.newProtocol(CryoUnetProtImportModel, modelFolder=modelDir,
                                                    samplingRate=2.0, copyFiles=False))
        pick = self.newProtocol(CryoUnetProtPick, useGpu=False, streamingBatchSize=0)
        pick.inputMicrographs.set(self.micsA)
        pick.inputMicrographs.setExtended("outputMicrographs")
        pick.inputModels.append(self._pointer(importModel, "outputModel"))
        self.runExpectingFailure(pick)
        message = pick.getErrorMessage()
        self.assertIn("cryounet pick failed: ", message)
        self.assertIn("weights contain NaN or infinite values", message)
        self.assertNotIn("Traceback", message)

    def test_pick_skips_corrupt_micrographs(self):
        modelDir = trainModelWithCli(self.simA, self.simA, os.path.join(self.dataDir, "model"))
        importModel = self.runProt(self.newProtocol(CryoUnetProtImportModel,
                                                    modelFolder=modelDir, samplingRate=2.0))
        folder = os.path.join(self.dataDir, "corrupt_pick")
        simulate(folder, micrographs=5, seed=13)
        mics = self.runProt(self.importMicrographs(folder))
        truncate(os.path.join(folder, "mic_001.mrc"))  # caught by the plugin's header check
        fillWithNan(os.path.join(folder, "mic_002.mrc"))  # caught by the engine...
        fillWithNan(os.path.join(folder, "mic_003.mrc"))  # ...a whole batch of them
        # batches of two: [000 good, 001 truncated], [002 NaN, 003 NaN], [004 good]
        pick = self.newProtocol(CryoUnetProtPick, useGpu=False, streamingBatchSize=2,
                                threshold=0.3)
        pick.inputMicrographs.set(mics)
        pick.inputMicrographs.setExtended("outputMicrographs")
        pick.inputModels.append(self._pointer(importModel, "outputModel"))
        self.runProt(pick)

        records = {r["micName"]: r for r in pick._allRecords()}
        self.assertEqual(len(records), 5)
        self.assertIn("truncated", records["mic_001.mrc"]["skipped"])
        for name in ("mic_002.mrc", "mic_003.mrc"):
            self.assertIn("the engine skipped it", records[name]["skipped"])
            self.assertIn("NaN", records[name]["skipped"])  # the engine's own reason
        for name in ("mic_000.mrc", "mic_004.mrc"):
            self.assertIsNone(records[name]["skipped"])
            self.assertTrue(os.path.exists(records[name]["coordinates"]))
        output = pick.outputCoordinates
        self.assertTrue({c.getMicName() for c in output.iterItems()}
                        <= {"mic_000.mrc", "mic_004.mrc"})
        assertCoordinatesMatchStar(self, pick, output)
        self.assertTrue(all(getattr(c, SCORE_ATTR).get() >= 0.3 - 1e-6
                            for c in output.iterItems()))
        summary = "\n".join(pick.summary())
        self.assertIn("Micrographs picked: 2, skipped: 3", summary)
        with open(pick.getStdoutLog()) as handle:
            log = handle.read()
        self.assertIn("mic_001.mrc skipped: truncated: ", log)
        # The all-unreadable batch did not stop the streaming run: the engine listed both.
        skipped = os.path.join(pick._getExtraPath("batches", "batch_000003-000004", "picks"),
                               "skipped.json")
        with open(skipped) as handle:
            self.assertEqual(sorted(os.path.basename(e["micrograph"]) for e in json.load(handle)),
                             ["mic_002.mrc", "mic_003.mrc"])

    def _pointer(self, prot, name):
        from pyworkflow.object import Pointer
        return Pointer(prot, extended=name)
