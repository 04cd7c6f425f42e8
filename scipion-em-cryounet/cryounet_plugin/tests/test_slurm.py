"""The protocols through a real SLURM queue (one node, started by ``.ci/start-slurm``, which
``.ci/run`` calls): Scipion's own submission code renders the hosts.conf template (``#SBATCH``
lines with the job's threads, memory, GPUs and JOB_LOGS outputs), submits it with sbatch and polls
squeue. Both queue modes are run: the whole protocol as one job, and one job per step. The
engine's error in a job's .err file reaches the protocol's error message, and a job that SLURM
refuses (a GPU on a node without any) is reported as a refused submission.
"""
import glob
import json
import os
import shutil
import subprocess

import pytest
from pyworkflow.constants import QUEUE_FOR_JOBS

from cryounet_plugin import Plugin
from cryounet_plugin.constants import MODELS_LIBRARY
from cryounet_plugin.protocols import CryoUnetProtPick, CryoUnetProtTrain
from cryounet_plugin.tests.common import SIM_DIAMETER, SIM_BOX, CryoUnetTestBase, simulate, tinyConfigJson


def slurmAnswers():
    """True when a SLURM cluster with an available node answers here."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated")
                                        for s in proc.stdout.splitlines())


pytestmark = [pytest.mark.scipion, pytest.mark.slow,
              pytest.mark.skipif(not slurmAnswers(), reason="no SLURM here: bash .ci/start-slurm "
                                                            "starts one (root; .ci/run does)")]

SLURM_FIRST_JOB_ID = 50000000  # FirstJobId in .ci/start-slurm


class TestCryoUnetSlurm(CryoUnetTestBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.queue = os.environ["CRYOUNET_TEST_SLURM_QUEUE"]
        sim = simulate(os.path.join(cls.dataDir, "sim"), micrographs=3, seed=31)
        cls.mics = cls.runProt(cls.importMicrographs(sim))
        cls.coords = cls.importCoordinates(cls.mics, sim, boxSize=SIM_BOX)

    def queued(self, prot, perStep, memory="1024"):
        prot._useQueue.set(True)
        prot.setQueueParams([self.queue, {"JOB_MEMORY": memory, QUEUE_FOR_JOBS: "Y" if perStep else "N"}])
        return prot

    def newPick(self, **kwargs):
        pick = self.newProtocol(CryoUnetProtPick, tta=False, streamingBatchSize=0, **kwargs)
        pick.inputMicrographs.set(self.mics)
        pick.inputMicrographs.setExtended("outputMicrographs")
        return pick

    def jobScripts(self, prot):
        return sorted(glob.glob(os.path.join(prot._getLogsPath(), "*.job")))

    def test_1_train_as_one_job_then_pick_with_one_job_per_step(self):
        train = self.newProtocol(CryoUnetProtTrain, epochs=1, useGpu=False, extraConfig=tinyConfigJson())
        train.inputMicrographs.set(self.mics)
        train.inputMicrographs.setExtended("outputMicrographs")
        train.inputCoordinates.set(self.coords)
        train.inputCoordinates.setExtended("outputCoordinates")
        self.runProt(self.queued(train, perStep=False))
        self.assertGreaterEqual(int(train.getJobIds()[0]), SLURM_FIRST_JOB_ID)  # SLURM ran it
        self.assertAlmostEqual(train.outputModel.getDiameter(), SIM_DIAMETER, places=3)
        self.assertTrue(os.path.exists(train.outputModel.getWeightsFile()))
        scripts = self.jobScripts(train)
        self.assertEqual(len(scripts), 1, scripts)  # the protocol itself is the job
        with open(scripts[0]) as handle:
            script = handle.read()
        self.assertIn("#SBATCH --gres=gpu:0", script)
        self.assertIn("pw_protocol_run.py", script)
        type(self).model = train.outputModel

        pick = self.queued(self.newPick(useGpu=False), perStep=True)
        pick.inputModels.append(self.pointer(train, "outputModel"))
        self.runProt(pick)
        self.assertGreater(pick.outputCoordinates.getSize(), 0)
        scripts = self.jobScripts(pick)
        self.assertEqual(len(scripts), 1, scripts)  # one engine run = one job
        with open(scripts[0]) as handle:
            script = handle.read()
        self.assertIn("-m cryounet pick", script)
        self.assertIn("--threads 1", script)  # the engine uses the job's one CPU
        self.assertIn("#SBATCH --cpus-per-task=1", script)
        # sbatch sent the job's output where the template said (JOB_LOGS)
        self.assertTrue(os.path.exists(scripts[0][:-len(".job")] + ".err"))

    def test_2_the_engine_error_of_a_slurm_job_reaches_the_protocol(self):
        """Weights that do not fit the model's configuration pass the form's torch-free checks;
        the engine refuses them inside the job, and its error line is the protocol's message."""
        library = Plugin.getModelsFolder()
        broken = os.path.join(library, "mismatched")
        shutil.copytree(self.model.getPath(), broken)
        with open(os.path.join(broken, "config.json")) as handle:
            config = json.load(handle)
        config["config"]["model"]["base_channels"] *= 2
        with open(os.path.join(broken, "config.json"), "w") as handle:
            json.dump(config, handle)
        pick = self.queued(self.newPick(useGpu=False, modelSource=MODELS_LIBRARY, libraryModel="mismatched"),
                           perStep=True)
        self.assertEqual(pick.validate(), [])
        self.runExpectingFailure(pick)
        message = pick.getErrorMessage()
        self.assertIn("cryounet pick failed:", message)
        self.assertIn("model.safetensors", message)
        # the engine's log, its error line included, goes to the job's output (.out)
        outs = [p for p in glob.glob(os.path.join(pick._getLogsPath(), "*.out"))]
        self.assertTrue(any("cryounet pick: error:" in open(p).read() for p in outs), outs)

    def test_3_a_job_slurm_refuses_is_said_to_be_refused(self):
        """Use GPU = Yes on a queue whose node has no GPU: sbatch refuses the job (gres)."""
        pick = self.queued(self.newPick(useGpu=True, gpuList="0"), perStep=True)
        pick.inputModels.append(self.pointer(self.model))
        self.runExpectingFailure(pick)
        message = pick.getErrorMessage()
        self.assertIn("The queue did not accept the job of cryounet pick", message)
        self.assertIn("gres", message)

    def test_4_data_parallel_training_as_one_torchrun_job(self):
        """2 training processes (gloo on the CPU) in one SLURM job per step: the job asks for the
        protocol's 2 threads, the engine starts torchrun inside it, and rank 0's model is the
        protocol's output."""
        train = self.newProtocol(CryoUnetProtTrain, epochs=2, useGpu=False, cpuProcesses=2,
                                 numberOfThreads=2, extraConfig=tinyConfigJson())
        train.inputMicrographs.set(self.mics)
        train.inputMicrographs.setExtended("outputMicrographs")
        train.inputCoordinates.set(self.coords)
        train.inputCoordinates.setExtended("outputCoordinates")
        self.runProt(self.queued(train, perStep=True))
        self.assertTrue(os.path.exists(train.outputModel.getWeightsFile()))
        scripts = self.jobScripts(train)
        self.assertEqual(len(scripts), 1, scripts)  # the training step is the one job
        with open(scripts[0]) as handle:
            script = handle.read()
        self.assertIn("#SBATCH --cpus-per-task=2", script)
        self.assertIn("-m cryounet train", script)
        self.assertIn("--devices cpu,cpu --threads 1", script)
        with open(scripts[0][:-len(".job")] + ".out") as handle:  # the engine's log
            log = handle.read()
        for line in ("torch.distributed.run --standalone --nproc-per-node=2", "process 1 of 2",
                     "process 2 of 2", "gloo backend", "data-parallel over 2 processes"):
            self.assertIn(line, log)
        with open(os.path.join(train.outputModel.getPath(), "history.json")) as handle:
            self.assertEqual([r["epoch"] for r in json.load(handle)], [1, 2])

    def pointer(self, prot, name=None):
        from pyworkflow.object import Pointer
        return Pointer(prot, extended=name) if name else Pointer(prot)
