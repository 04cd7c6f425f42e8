"""Thread counts that fit the machine (cryounet.limits): usable CPUs (affinity, cgroup quota) and
pools that fit under an address-space limit, refused in one line instead of a hang or an abort."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import REPO, SimData, error_line

from cryounet import limits
from cryounet.errors import CryoUNetError


def _cgroup(tmp_path: Path, proc_line: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_line + "\n")
    return root, proc


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, "0::/job.slice/job42", {"job.slice/job42/cpu.max": "250000 100000\n"})
    assert limits.cgroup_cpu_limit(root, proc) == 2.5
    root, proc = _cgroup(tmp_path / "none", "0::/job", {"job/cpu.max": "max 100000\n"})
    assert limits.cgroup_cpu_limit(root, proc) is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root, proc = _cgroup(tmp_path, "4:cpu,cpuacct:/slurm/job7",
                         {"cpu,cpuacct/slurm/job7/cpu.cfs_quota_us": "400000\n",
                          "cpu,cpuacct/slurm/job7/cpu.cfs_period_us": "100000\n"})
    assert limits.cgroup_cpu_limit(root, proc) == 4.0
    root, proc = _cgroup(tmp_path / "none", "4:cpu,cpuacct:/a",
                         {"cpu,cpuacct/a/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/a/cpu.cfs_period_us": "100000\n"})
    assert limits.cgroup_cpu_limit(root, proc) is None


def test_usable_cpus_follow_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(limits, "cgroup_cpu_limit", lambda: 3.5)
    assert limits.usable_cpus() == 4
    monkeypatch.setattr(limits, "cgroup_cpu_limit", lambda: None)
    assert limits.usable_cpus() == 64


def test_threads_above_the_usable_cpus_are_capped_with_a_line(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(limits, "usable_cpus", lambda: 3)
    with caplog.at_level(logging.INFO, logger="cryounet"):
        assert limits.fit_threads(64) == 3
    assert "--threads 64 is more than the 3 CPU(s)" in caplog.text
    caplog.clear()
    assert limits.fit_threads(2) == 2 and limits.fit_threads(0) == 3
    assert caplog.text == ""


def test_a_pool_that_does_not_fit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "address_space_limit", lambda: 1024 ** 3)
    monkeypatch.setattr(limits, "_address_space_used", lambda: 512 * 1024 ** 2)
    limits.check_thread_room(1)
    with pytest.raises(CryoUNetError, match=r"address-space limit .* too little for 64 threads.*--threads \d+ or fewer"):
        limits.check_thread_room(64)
    monkeypatch.setattr(limits, "address_space_limit", lambda: None)
    limits.check_thread_room(64)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    folder = tmp_path_factory.mktemp("limits") / "model"
    shutil.copytree(tiny_model, folder)
    subprocess.run([sys.executable, "-m", "cryounet", "export", "--model", str(folder), "--quiet"],
                   cwd=REPO, check=True, timeout=120)
    return folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ulimit -v as on a Linux queue node")
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_pick_under_an_address_space_limit_ends_in_one_line(onnx_model: Path, sim_data: SimData,
                                                            tmp_path: Path, backend: str) -> None:
    # A 1 GiB stack per thread (ulimit -s) under a 2 GB address-space limit: a pool of two threads
    # cannot be made (before: libgomp aborted, exit 1; many threads made ONNX Runtime hang).
    command = (f"ulimit -v 2000000 -s 1000000; exec {sys.executable} -m cryounet pick --model {onnx_model} "
               f"--micrographs {sim_data.micrographs[0]} --output {tmp_path / 'picks'} --device cpu "
               f"--threads 2 --no-tta --backend {backend}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    if limits.usable_cpus() < 2:
        assert proc.returncode == 0, proc.stderr  # one CPU: one thread, which fits
        return
    assert proc.returncode == 2, proc.stderr
    message = error_line(proc.stderr, "pick")
    assert "address-space limit" in message and "--threads 1" in message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ulimit -v as on a Linux queue node")
def test_torch_under_a_too_small_limit_is_one_line(onnx_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    # torch's import aborted (std::bad_alloc, exit 134) under 0.67 GiB; ONNX Runtime still picks
    argv = (f"{sys.executable} -m cryounet pick --model {onnx_model} --micrographs {sim_data.micrographs[0]} "
            f"--device cpu --threads 1 --no-tta")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torch_run = subprocess.run(["bash", "-c", f"ulimit -v 700000; exec {argv} --backend torch --output {tmp_path / 't'}"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert torch_run.returncode == 2, torch_run.stderr
    assert "too little to load PyTorch" in error_line(torch_run.stderr, "pick")
    onnx_run = subprocess.run(["bash", "-c", f"ulimit -v 700000; exec {argv} --output {tmp_path / 'o'}"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert onnx_run.returncode == 0, onnx_run.stderr

