"""Shared fixtures of the engine tests (``cryounet``; no Scipion).

* ``sim_data``: a tiny simulated data set (4 micrographs of 192 px, particles of 24 px), made once
  per session; tests must treat it as read-only (copy files to ``tmp_path`` to change them).
* ``tiny_model``: a tiny model folder trained once per session through the CLI on ``sim_data``.
* ``run_cli``: runs ``cryounet.cli.main`` in-process and returns ``(exit code, stdout, stderr)``.

Torch runs single-threaded in the tests: results are reproducible and the suite does not fight
other processes for the CPU (oversubscribed torch threads are many times slower).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Callable

import pytest

# The helper module sits next to this file; make it importable whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_helpers import SIM_DIAMETER, SIM_SIZE, TINY_CONFIG, SimData


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than ~5 s (still runs by default)")


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _reset_cryounet_logger():
    """``cryounet.cli.setup_logging`` gives the ``cryounet`` logger its own stderr handler and turns
    propagation off; undo that after each test so that caplog and later tests see the records."""
    yield
    root = logging.getLogger("cryounet")
    root.handlers[:] = []
    root.setLevel(logging.NOTSET)
    root.propagate = True


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory: pytest.TempPathFactory) -> SimData:
    from cryounet.simulate import SimulationConfig, simulate_dataset

    folder = tmp_path_factory.mktemp("sim")
    cfg = SimulationConfig(n_micrographs=4, size=SIM_SIZE, diameter_px=SIM_DIAMETER,
                           particles_per_micrograph=12, seed=3)
    paths = simulate_dataset(cfg, folder)
    return SimData(folder, paths, SIM_DIAMETER, SIM_SIZE)


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


def _cli(argv: list[str]) -> int:
    from cryounet.cli import main

    return main([str(a) for a in argv])


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run_cli("pick", "--model", ...)`` -> ``(exit code, stdout, stderr)``."""

    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()  # drop anything printed before
        try:
            rc = _cli([str(a) for a in argv])
        except SystemExit as exc:  # argparse refused an argument (its one-line error, exit 2)
            rc = exc.code
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, sim_data: SimData,
               tiny_config_file: Path) -> Path:
    """A model folder trained once (2 tiny epochs) via ``cryounet train``; read-only for tests."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    rc = _cli(["train", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder,
               "--diameter", sim_data.diameter, "--output", out, "--config", tiny_config_file,
               "--device", "cpu", "--quiet"])
    logging.getLogger("cryounet").handlers[:] = []
    logging.getLogger("cryounet").propagate = True
    assert rc == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    return out
