"""The tests' own helpers (common.py): how they follow a run launched without waiting."""
import os
import subprocess

import pytest

import pyworkflow.protocol as pwprot
import pyworkflow.utils as pwutils

from cryounet_plugin.tests.common import DEAD_PROCESS, CryoUnetTestBase, simulate

pytestmark = pytest.mark.scipion


def deadPid():
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class TestFollowingARun(CryoUnetTestBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.folder = simulate(os.path.join(cls.dataDir, "mics"), micrographs=1, seed=5)

    def _inTheRaceWindow(self):
        """A finished run (an import of its own) as pyworkflow leaves the project's copy when the
        run's last write fell between its reading run.db and reading the file's time: running,
        up to date by the time, and its process gone."""
        prot = self.runProt(self.importMicrographs(self.folder))
        prot.setStatus("running")
        prot.setPid(deadPid())
        prot.lastUpdateTimeStamp.set(pwutils.getFileLastModificationDate(prot.getDbPath()))
        return prot

    def test_pyworkflow_alone_fails_the_finished_run(self):
        # the race the helper works round: once pyworkflow no longer does this, drop the workaround
        prot = self._inTheRaceWindow()
        self.proj._updateProtocol(prot)
        self.assertTrue(prot.isFailed(), prot.getStatus())
        self.assertIn(DEAD_PROCESS, prot.getErrorMessage())

    def test_update_reads_the_final_state_from_the_run_database(self):
        prot = self._inTheRaceWindow()
        self.update(prot)
        self.assertTrue(prot.isFinished(), "%s: %s" % (prot.getStatus(), prot.getErrorMessage()))
        self.assertTrue(prot.hasAttribute("outputMicrographs"))

    def test_a_run_that_died_still_fails(self):
        prot = self._inTheRaceWindow()
        # its own database says running, with the pid of its process: it died before its last write
        own = pwprot.getProtocolFromDb(self.proj.getPath(), prot.getDbPath(), prot.getObjId())
        own.setStatus("running")
        own.setPid(prot.getPid())
        own._store()
        own.closeMappers()
        prot.lastUpdateTimeStamp.set(pwutils.getFileLastModificationDate(prot.getDbPath()))
        self.update(prot)
        self.assertTrue(prot.isFailed(), prot.getStatus())
        self.assertIn(DEAD_PROCESS, prot.getErrorMessage())
