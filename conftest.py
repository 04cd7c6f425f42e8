"""Repository-wide pytest setup.

Scipion reads its configuration from environment variables when ``pyworkflow`` is first imported,
so they are set here, at collection start, before any test module imports it:

* ``SCIPION_USER_DATA``: a fresh temporary folder (projects and logs never touch a real Scipion
  installation's data);
* ``SCIPION_HOSTS``: an absolute ``hosts.conf`` generated in that folder. Its ``localhost`` host
  defines a small "queue" whose submit command runs the job script locally in the background and
  keeps a copy of it, so the queue tests exercise Scipion's real submission code, and a queue
  ``slurm`` submitted with sbatch to the one-node SLURM that ``.ci/run`` starts (``.ci/start-slurm``);
* ``CRYOUNET_MODELS``: an empty model library in that folder;
* ``SCIPION_DOMAIN=pwem``; ``SCIPION_STEPS_CHECK_SEC=1`` and ``SCIPION_EM_NEW_FILE_CHECK_SEC=1``
  (streaming and file-import polling every second instead of every 5-10 s).

The engine tests in ``tests/`` do not import Scipion and are unaffected. The Scipion project tests
carry the ``scipion`` marker: ``-m "not scipion"`` deselects them, ``-m scipion`` runs only them.
Set ``CRYOUNET_KEEP_TEST_DATA=1`` to keep the temporary folder (its path is printed) for inspection.
"""
import atexit
import os
import shutil
import stat
import sys
import tempfile

_TMP_ROOT = tempfile.mkdtemp(prefix="cryounet-pytest-")
_USER_DATA = os.path.join(_TMP_ROOT, "ScipionUserData")
_QUEUE_DIR = os.path.join(_TMP_ROOT, "queue")
_HOSTS = os.path.join(_TMP_ROOT, "hosts.conf")

#: Queue name of the local background "queue" defined in the generated hosts.conf.
TEST_QUEUE_NAME = "local_background"
#: Queue name of the real SLURM partition (``.ci/start-slurm`` starts a one-node SLURM).
SLURM_QUEUE_NAME = "slurm"
#: SLURM's first job id there (FirstJobId): ids from it on are SLURM's, smaller ones are the
#: local queue's process ids (pid_max is at most 4194304).
SLURM_FIRST_JOB_ID = 50000000

_SUBMIT_SH = """#!/bin/bash
# Test queues. slurm: sbatch (SLURM reads the #SBATCH lines). Else: run the job script in the
# background and keep a copy of it (job id = this PID).
set -e
if [ "$1" = "%(slurm)s" ]; then
    exec sbatch --parsable "$2"
fi
script="$2"
rec="%(queue)s"
mkdir -p "$rec"
id=$$
cp "$script" "$rec/$id.job"
nohup setsid bash -c 'bash "$0" > "$1.out" 2>&1; echo $? > "$1.rc"' "$script" "$rec/$id" \\
    > /dev/null 2>&1 < /dev/null &
echo "$id"
"""

_CHECK_SH = """#!/bin/bash
# Test queues (an empty answer means finished). SLURM: the job is listed while it is queued or
# running. Local: finished once its exit-code file exists.
if [ "$1" -ge %(first_slurm_id)d ]; then
    squeue -h -j "$1" 2>/dev/null
else
    [ -e "%(queue)s/$1.rc" ] || echo "running"
fi
"""

_CANCEL_SH = """#!/bin/bash
# SLURM: scancel. Local: nothing (its job id is the PID of a submit script long gone, which the
# system may have given to another process since).
if [ "$1" -ge %(first_slurm_id)d ]; then scancel "$1"; else echo "cancel $1"; fi
"""

_HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %%_(JOB_NODES)d --map-by node %%_(COMMAND)s
NAME = %(queue_name)s
MANDATORY = 0
SUBMIT_COMMAND = bash %(submit)s %%_(JOB_QUEUE)s %%_(JOB_SCRIPT)s
CHECK_COMMAND = bash %(check)s %%_(JOB_ID)s
CANCEL_COMMAND = bash %(cancel)s %%_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    ### Job name: %%_(JOB_NAME)s
    #TESTQUEUE --gpus=%%_(GPU_COUNT)s
    #TESTQUEUE --cpus-per-task=%%_(JOB_THREADS)s
    #TESTQUEUE --mem=%%_(JOB_MEMORY)sM
    #SBATCH --job-name=scipion-%%_(JOB_NAME)s
    #SBATCH --partition=cpu
    #SBATCH --gres=gpu:%%_(GPU_COUNT)s
    #SBATCH --cpus-per-task=%%_(JOB_THREADS)s
    #SBATCH --mem=%%_(JOB_MEMORY)sM
    #SBATCH --output=%%_(JOB_LOGS)s.out
    #SBATCH --error=%%_(JOB_LOGS)s.err
    export PATH=%(bindir)s:$PATH
    %%_(JOB_COMMAND)s
QUEUES = {"%(queue_name)s": [["JOB_MEMORY", "2048", "Memory (MB)", "Memory requested for the job"]],
    "%(slurm)s": [["JOB_MEMORY", "1024", "Memory (MB)", "Memory requested for the job"]]}
QUEUES_DEFAULT = {"JOB_GPUS": "0"}
"""


def _write(path, text, executable=False):
    with open(path, "w") as handle:
        handle.write(text)
    if executable:
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def _setup_scipion_environment():
    os.makedirs(_USER_DATA, exist_ok=True)
    os.makedirs(_QUEUE_DIR, exist_ok=True)
    submit = os.path.join(_TMP_ROOT, "queue_submit.sh")
    check = os.path.join(_TMP_ROOT, "queue_check.sh")
    cancel = os.path.join(_TMP_ROOT, "queue_cancel.sh")
    names = {"queue": _QUEUE_DIR, "slurm": SLURM_QUEUE_NAME, "first_slurm_id": SLURM_FIRST_JOB_ID}
    _write(submit, _SUBMIT_SH % names, executable=True)
    _write(check, _CHECK_SH % names, executable=True)
    _write(cancel, _CANCEL_SH % names, executable=True)
    _write(_HOSTS, _HOSTS_CONF % {"queue_name": TEST_QUEUE_NAME, "slurm": SLURM_QUEUE_NAME,
                                  "submit": submit, "check": check, "cancel": cancel,
                                  "bindir": os.path.dirname(sys.executable)})
    os.environ["SCIPION_USER_DATA"] = _USER_DATA
    os.environ["SCIPION_HOSTS"] = _HOSTS
    os.environ["SCIPION_DOMAIN"] = "pwem"
    os.environ["SCIPION_PYTHON"] = sys.executable
    os.environ["SCIPION_STEPS_CHECK_SEC"] = "1"
    os.environ["SCIPION_EM_NEW_FILE_CHECK_SEC"] = "1"
    # The site's model library (CRYOUNET_MODELS) of the tests: empty until a test puts models there.
    os.environ["CRYOUNET_MODELS"] = os.path.join(_TMP_ROOT, "models")
    os.environ["CRYOUNET_TEST_QUEUE_DIR"] = _QUEUE_DIR
    os.environ["CRYOUNET_TEST_QUEUE_NAME"] = TEST_QUEUE_NAME
    os.environ["CRYOUNET_TEST_SLURM_QUEUE"] = SLURM_QUEUE_NAME
    # The protocol subprocesses must find the interpreter running the tests first on PATH
    # (pyworkflow launches them with "python3").
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


if "pyworkflow" in sys.modules:  # pragma: no cover - only when something imported it earlier
    sys.stderr.write("conftest.py: pyworkflow was imported before the Scipion test environment "
                     "was set; Scipion tests may use the wrong configuration\n")
_setup_scipion_environment()


def _cleanup():
    if os.environ.get("CRYOUNET_KEEP_TEST_DATA") == "1":
        sys.stderr.write(f"\nScipion test data kept in {_TMP_ROOT}\n")
        return
    shutil.rmtree(_TMP_ROOT, ignore_errors=True)


atexit.register(_cleanup)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "scipion: runs real Scipion projects (protocol subprocesses; slow)")
