"""Queue submission: the training protocol sent through a queue, one job per step.

conftest.py writes a hosts.conf whose queue submits a job by running its script in the
background (and keeping a copy): Scipion's real submission code renders the SUBMIT_TEMPLATE,
calls SUBMIT_COMMAND, polls CHECK_COMMAND, and the job runs the engine. The job scripts are then
checked for the GPUs they asked for and the engine command they ran.
"""
import glob
import os

import pytest
from pyworkflow.constants import QUEUE_FOR_JOBS

from cryounet_plugin.constants import GPU_PLACEHOLDER
from cryounet_plugin.protocols import CryoUnetProtTrain
from cryounet_plugin.tests.common import SIM_BOX, SIM_DIAMETER, CryoUnetTestBase, simulate, tinyConfigJson

pytestmark = pytest.mark.scipion


def cudaAvailable():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


class TestCryoUnetQueue(CryoUnetTestBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.queueDir = os.environ["CRYOUNET_TEST_QUEUE_DIR"]
        cls.queueName = os.environ["CRYOUNET_TEST_QUEUE_NAME"]
        sim = simulate(os.path.join(cls.dataDir, "sim"), micrographs=3, seed=21)
        cls.mics = cls.runProt(cls.importMicrographs(sim))
        cls.coords = cls.importCoordinates(cls.mics, sim, boxSize=SIM_BOX)

    def newTrain(self, **kwargs):
        prot = self.newProtocol(CryoUnetProtTrain, epochs=1, extraConfig=tinyConfigJson(),
                                **kwargs)
        prot.inputMicrographs.set(self.mics)
        prot.inputMicrographs.setExtended("outputMicrographs")
        prot.inputCoordinates.set(self.coords)
        prot.inputCoordinates.setExtended("outputCoordinates")
        return prot

    def renderTemplate(self, prot):
        submit = dict(prot.getHostConfig().getQueuesDefault())
        submit.update(prot.getSubmitDict())
        submit.update(JOB_SCRIPT="job.sh", JOB_COMMAND="true")
        return prot.getHostConfig().getSubmitTemplate() % submit

    def test_engine_error_of_a_queue_job_and_a_refused_submission(self):
        """In one-job-per-step mode the engine's error line is in the job's .out/.err (where the
        hosts.conf template sends JOB_LOGS): the protocol reports it. A refused submission is said
        to be one, not an engine failure."""
        import time
        from unittest import mock
        from cryounet_plugin import Plugin
        from cryounet_plugin.protocols.protocol_base import EngineError
        prot = self.newTrain()
        prot.setWorkingDir(os.path.join(self.dataDir, "queue_logs"))
        logs = prot._getLogsPath()
        os.makedirs(logs, exist_ok=True)
        with open(os.path.join(logs, "cryounet-1-1.err"), "w") as handle:
            handle.write("cryounet train: error: an older attempt\n")
        time.sleep(0.05)
        with open(os.path.join(logs, "cryounet-1-2.err"), "w") as handle:
            handle.write("cryounet train: error: pick.tile_overlap must be smaller than pick.tile_size\n")
        self.assertEqual(prot._findEngineError("train"),
                         "pick.tile_overlap must be smaller than pick.tile_size")
        with mock.patch.object(Plugin, "runCryounet", side_effect=Exception("job failed (exit 2)")):
            with self.assertRaises(EngineError) as failed:
                prot._runEngine("train", ["--device", "cpu"], "train")
        self.assertIn("cryounet train failed: pick.tile_overlap must be smaller", str(failed.exception))
        refused = Exception("Failed to submit to queue. JOBID is not valid. sbatch: error: Invalid gres")
        with mock.patch.object(Plugin, "runCryounet", side_effect=refused):
            with self.assertRaises(RuntimeError) as failed:
                prot._runEngine("train", ["--device", "cpu"], "train")
        self.assertNotIsInstance(failed.exception, EngineError)
        self.assertIn("The queue did not accept the job of cryounet train", str(failed.exception))
        self.assertIn("Invalid gres", str(failed.exception))

    def test_engine_threads_follow_the_protocol(self):
        prot = self.newTrain(ensembleSize=2, useGpu=False)
        self.assertEqual(prot._engineThreads(2), 0)  # local, default: torch's own choice
        prot.numberOfThreads.set(5)  # 4 steps at once at most, 2 members: 2 threads each
        self.assertEqual(prot._engineThreads(2), 2)
        prot.numberOfThreads.set(1)
        prot._useQueue.set(True)  # a queue job of 1 thread: 1
        self.assertEqual(prot._engineThreads(2), 1)

    def test_job_asks_for_the_protocol_gpus(self):
        """The GPU request of a job follows the protocol's GPU list (no GPU needed to check)."""
        prot = self.newTrain(gpuList="0 1", useGpu=True)
        prot.setHostConfig(self.proj.getHostConfig("localhost"))
        prot.setWorkingDir(os.path.join(self.dataDir, "not_launched"))
        prot._useQueue.set(True)
        prot.setQueueParams([self.queueName, {"JOB_MEMORY": "1024", QUEUE_FOR_JOBS: "Y"}])
        self.assertEqual(prot.getSubmitDict()["GPU_COUNT"], 2)
        self.assertIn("#TESTQUEUE --gpus=2", self.renderTemplate(prot))
        self.assertIn("#TESTQUEUE --mem=1024M", self.renderTemplate(prot))
        prot.useGpu.set(False)  # CPU run: the job must not hold GPUs
        self.assertEqual(prot.getSubmitDict()["GPU_COUNT"], 0)
        self.assertIn("#TESTQUEUE --gpus=0", self.renderTemplate(prot))

    def test_training_on_several_gpus_is_one_data_parallel_engine_run(self):
        """GPU IDs '0 1' with one thread: the one training step gets both GPUs and hands them all
        to the engine (``--devices``: torchrun, one process per GPU); its job asks for 2 GPUs."""
        prot = self.newTrain(gpuList="0 1", useGpu=True)
        prot.setHostConfig(self.proj.getHostConfig("localhost"))
        prot._useQueue.set(True)
        prot.setQueueParams([self.queueName, {"JOB_MEMORY": "1024", QUEUE_FOR_JOBS: "Y"}])
        self.assertEqual(prot._trainDeviceArgs()[:2], ["--devices", GPU_PLACEHOLDER])
        self.assertEqual(prot.getSubmitDict()["GPU_COUNT"], 2)
        self.assertIn("#TESTQUEUE --gpus=2", self.renderTemplate(prot))
        self.assertEqual(prot._processErrors(), [])
        prot.extraConfig.set('{"train": {"batch_size": 7}}')
        self.assertEqual(prot._processErrors(), [
            "train.batch_size 7 cannot be shared out equally by 2 training processes of a step (GPUs): "
            "make it a multiple of 2"])
        prot.dataParallel.set(False)  # each step its first GPU, as before
        self.assertEqual(prot._trainDeviceArgs()[:2], ["--device", GPU_PLACEHOLDER])
        self.assertEqual(prot._processErrors(), [])

    def test_cpu_training_processes_share_the_threads(self):
        prot = self.newTrain(useGpu=False, cpuProcesses=2, numberOfThreads=4)
        prot._useQueue.set(True)
        self.assertEqual(prot._trainDeviceArgs(), ["--devices", "cpu,cpu", "--threads", "2"])
        prot.cpuProcesses.set(1)
        self.assertEqual(prot._trainDeviceArgs(), ["--device", "cpu", "--threads", "4"])

    def test_train_through_queue_per_step_jobs(self):
        useGpu = cudaAvailable()
        before = set(glob.glob(os.path.join(self.queueDir, "*.job")))
        prot = self.newTrain(useGpu=useGpu, gpuList="0")
        prot._useQueue.set(True)
        prot.setQueueParams([self.queueName, {"JOB_MEMORY": "1024", QUEUE_FOR_JOBS: "Y"}])
        self.runProt(prot)

        self.assertTrue(prot.hasAttribute("outputModel"))
        self.assertAlmostEqual(prot.outputModel.getDiameter(), SIM_DIAMETER, places=3)
        self.assertTrue(os.path.exists(prot.outputModel.getWeightsFile()))
        jobs = sorted(set(glob.glob(os.path.join(self.queueDir, "*.job"))) - before)
        self.assertEqual(len(jobs), 1, jobs)  # one engine run = one job (CPU steps stay local)
        with open(jobs[0]) as handle:
            script = handle.read()
        self.assertIn("#TESTQUEUE --gpus=%d" % (1 if useGpu else 0), script)
        self.assertIn("-m cryounet train", script)
        # GPU ids are renumbered from 0 inside a queued job
        self.assertIn("--devices '0'" if useGpu else "--device cpu", script)
        # the engine uses the threads the job asked for (1), not every core of the node
        self.assertIn("#TESTQUEUE --cpus-per-task=1", script)
        self.assertIn("--threads 1", script)
        with open(jobs[0][:-len(".job")] + ".rc") as handle:
            self.assertEqual(handle.read().strip(), "0")


def test_the_cluster_guide_hosts_conf_renders_a_slurm_job(tmp_path):
    """The hosts.conf of the cluster guide (docs/cluster.md) loads in Scipion and renders, for a training on
    2 GPUs in the gpu queue, a job script with the #SBATCH lines the guide promises."""
    import re
    from pwem import Domain
    from pyworkflow.protocol.hosts import HostConfig
    Domain.getProtocols()  # the Domain gives the protocol classes their plugin (the job's PLUGIN_MODULE)
    guide = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "cluster.md")
    with open(guide) as handle:
        text = handle.read()
    block = re.search(r"## Scipion on a SLURM cluster.*?```ini\n(.*?)```", text, re.S).group(1)
    conf = tmp_path / "hosts.conf"
    conf.write_text(block)
    host = HostConfig.load(str(conf))["localhost"]
    assert set(host.getQueueSystem().getQueues()) == {"gpu", "cpu"}
    prot = CryoUnetProtTrain(gpuList="0 1", useGpu=True, numberOfThreads=3)
    prot.setHostConfig(host)
    prot._useQueue.set(True)
    prot.setQueueParams(["gpu", {"JOB_MEMORY": "16384", "JOB_HOURS": "12", QUEUE_FOR_JOBS: "Y"}])
    submit = dict(host.getQueuesDefault())
    submit.update(prot.getSubmitDict())
    submit.update(JOB_SCRIPT="job.sh", JOB_COMMAND="python3 pw_protocol_run.py ...", JOB_LOGS="logs/job1")
    script = host.getSubmitTemplate() % submit
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gres=gpu:2", "#SBATCH --cpus-per-task=3",
                 "#SBATCH --mem=16384M", "#SBATCH --time=12:00:00", "#SBATCH --error=logs/job1.err"):
        assert line in script, script
    assert host.getSubmitCommand() % {"JOB_SCRIPT": "job.sh"} == "sbatch --parsable job.sh"
