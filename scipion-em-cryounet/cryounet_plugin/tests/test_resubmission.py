"""A pick run in batches (one queue job per batch) whose second job is killed mid-run, then
continued as Scipion's "Continue" does: every micrograph ends in the output exactly once, with the
picks of its own STAR file, none lost and none repeated.

The kill is real: the engine runs through a wrapper (CRYOUNET_PYTHON) that, for the batch holding
a chosen micrograph, starts the engine, waits until it has written the batch's first STAR file,
and SIGKILLs it and itself while it picks the second, leaving a half-written batch behind.
"""
import collections
import os
import sys

import mrcfile
import numpy as np
import pytest
from pyworkflow.constants import QUEUE_FOR_JOBS
from pyworkflow.object import Pointer
from pyworkflow.protocol.constants import MODE_RESUME

from cryounet_plugin import engine
from cryounet_plugin.constants import BATCHES_FOLDER
from cryounet_plugin.protocols import CryoUnetProtImportModel, CryoUnetProtPick
from cryounet_plugin.tests.common import CryoUnetTestBase, simulate, trainModelWithCli, writeKillOnceWrapper

pytestmark = [pytest.mark.scipion, pytest.mark.slow]

class TestCryoUnetResubmission(CryoUnetTestBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        sim = simulate(os.path.join(cls.dataDir, "sim"), micrographs=6, seed=41)
        cls.model = trainModelWithCli(sim, sim, os.path.join(cls.dataDir, "model"))
        # mic_003 (second of the second batch) is 8 x 8 copies of itself: picking it takes long
        # enough for the wrapper to kill the engine after mic_002's STAR file and before the end.
        path = os.path.join(sim, "mic_003.mrc")
        with mrcfile.open(path) as mrc:
            data, voxel = np.tile(mrc.data, (8, 8)), mrc.voxel_size
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = voxel
        cls.mics = cls.runProt(cls.importMicrographs(sim))
        cls.queueName = os.environ["CRYOUNET_TEST_QUEUE_NAME"]

    def test_killed_batch_job_is_resubmitted_and_no_micrograph_is_lost_or_repeated(self):
        wrapper = writeKillOnceWrapper(os.path.join(self.dataDir, "killer.sh"))
        flag = os.path.join(self.dataDir, "kill-once")
        open(flag, "w").close()
        imported = self.runProt(self.newProtocol(CryoUnetProtImportModel, modelFolder=self.model))
        pick = self.newProtocol(CryoUnetProtPick, useGpu=False, tta=False, streamingBatchSize=2,
                                streamingSleepOnWait=0)
        pick.inputMicrographs.set(self.mics)
        pick.inputMicrographs.setExtended("outputMicrographs")
        pick.inputModels.append(Pointer(imported, extended="outputModel"))
        pick._useQueue.set(True)
        pick.setQueueParams([self.queueName, {"JOB_MEMORY": "1024", QUEUE_FOR_JOBS: "Y"}])

        # The run (a subprocess) reads CRYOUNET_PYTHON from its environment.
        env = {"CRYOUNET_PYTHON": wrapper, "REAL_PYTHON": sys.executable, "KILL_FLAG": flag,
               "KILL_STEM": "mic_003"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self.runExpectingFailure(pick)
            self.assertFalse(os.path.exists(flag))  # the wrapper did kill a job
            self.assertIn("cryounet pick", pick.getErrorMessage())
            half = pick._getExtraPath(BATCHES_FOLDER, "batch_000003-000004", "picks")
            self.assertTrue(os.path.exists(os.path.join(half, "mic_002.star")))  # half-written
            self.assertFalse(os.path.exists(os.path.join(half, "mic_003.star")))
            self.assertFalse(engine.runCompleted(half))
            pick.runMode.set(MODE_RESUME)  # Scipion's "Continue": the failed batch's job again
            self.runProt(pick)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        records = pick._allRecords()
        self.assertEqual(sorted(r["micId"] for r in records), [1, 2, 3, 4, 5, 6])
        perMic = collections.Counter(c.getMicId() for c in pick.outputCoordinates.iterItems())
        for record in records:
            self.assertTrue(record["coordinates"] and not record["skipped"], record)
            self.assertEqual(perMic.get(record["micId"], 0),
                             len(engine.readCoordinates(record["coordinates"])), record)
        self.assertEqual(set(perMic), {1, 2, 3, 4, 5, 6})
        self.assertEqual(pick.outputCoordinates.getSize(), sum(perMic.values()))
        batches = [step for step in pick.loadSteps() if step.funcName.get() == "pickMicrographListStep"]
        self.assertEqual(len(batches), 3)
        self.assertTrue(all(step.isFinished() for step in batches))
