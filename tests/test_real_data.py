"""A short training run on real micrographs (CryoPPP EMPIAR-10028 excerpt, ../shared/data).

Skipped when the shared data folder is absent. Trains the default architecture briefly on the
train split (validation on the valid split), picks the test split at the calibrated threshold and
scores it with ``cryounet evaluate``. Takes about a minute and a half on two loaded CPU cores.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine_helpers import SHARED_DATA

DATASET = SHARED_DATA / "cryoppp-10028"

#: Measured when this test was written: F1 = 0.859 at the calibrated threshold (P 0.779,
#: R 0.958; best F1 0.861, AP 0.798) on the 5 test micrographs (452 particles). The floor is well
#: below that so that run-to-run noise cannot fail it, while a broken pipeline (F1 ~0.1-0.3) does.
F1_FLOOR = 0.65


@pytest.mark.slow
def test_short_training_on_cryoppp_10028(run_cli, tmp_path: Path) -> None:
    if not (DATASET / "train").is_dir() or not (DATASET / "test").is_dir():
        pytest.skip(f"real data not available at {DATASET}")
    diameter = json.loads((DATASET / "meta.json").read_text())["diameter_px"]
    assert diameter == 56.0
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"train": {"epochs": 6, "steps_per_epoch": 20, "num_threads": 1}}))
    model = tmp_path / "model"
    rc, _, err = run_cli("train", "--micrographs", DATASET / "train",
                         "--coordinates", DATASET / "train",
                         "--valid-micrographs", DATASET / "valid", "--valid-coordinates",
                         DATASET / "valid", "--diameter", diameter, "--output", model,
                         "--config", config, "--device", "cpu", "--quiet")
    assert rc == 0, err
    picks = tmp_path / "picks"
    rc, _, err = run_cli("pick", "--model", model, "--micrographs", DATASET / "test",
                         "--output", picks, "--device", "cpu", "--quiet")
    assert rc == 0, err
    rc, out, err = run_cli("evaluate", "--picks", picks, "--truth", DATASET / "test",
                           "--diameter", diameter)
    assert rc == 0, err
    numbers = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", out)}
    print(out)
    assert numbers["micrographs"] == 5 and numbers["truth"] == 452
    assert numbers["f1"] >= F1_FLOOR, out
    assert numbers["precision"] > 0.5 and numbers["recall"] > 0.5, out
