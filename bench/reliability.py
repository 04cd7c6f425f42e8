"""Reliability audit: the real ``cryounet`` CLI on bad micrographs, coordinates, parameters, hostile
model files, unwritable or full outputs and killed runs; each outcome classified automatically.

Every case runs ``python -m cryounet ...`` as a user would and is one of:

- ``error``: exit 2 and a last stderr line ``cryounet CMD: error: ...`` naming the file or option;
- ``skipped``: the run went on and listed the bad micrograph with its reason (``skipped.json``);
- ``warned``: the run went on and said what it did about the problem (a warning naming it);
- ``read``: the input was valid after all and was read correctly;
- ``traceback``: a Python traceback or an internal error (a bug);
- ``silent``: accepted without a word although the case needs an error, skip or warning;
- ``data loss``: a file the user had was changed or removed;
- ``hang``: still running at the case's time limit; ``crash``: ended by a signal.

The second round's groups (``bench/reliability_round2.py``) run after the first's.

Prints one line per group and the totals, and writes the table as JSON. Takes a few minutes.

    python bench/reliability.py [--work DIR] [--json FILE] [--round 1|2|all]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pickle
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1")
TINY = {"train": {"epochs": 2, "steps_per_epoch": 4, "batch_size": 4, "patch_size": 64, "num_threads": 1},
        "model": {"base_channels": 4, "depth": 2}, "pick": {"tta": False}}
FIELDS = {"nx": 0, "ny": 1, "nz": 2, "mode": 3, "mapc": 16, "mapr": 17, "maps": 18, "nsymbt": 23}
VALUES = (0, -1, -256, 1, 2, 99, 65536, 2**31 - 1)

results: dict[str, Counter] = defaultdict(Counter)
problems: list[str] = []


def cli(*argv: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m cryounet ARGV``; a run past ``timeout`` is returned with returncode None (a hang)."""
    command = [sys.executable, "-m", "cryounet", *map(str, argv)]
    try:
        return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(command, None, exc.stdout or "", exc.stderr or "")  # type: ignore[arg-type]


def classify(proc: subprocess.CompletedProcess, expect: str, names: str = "", warning: str = "") -> str:
    """Outcome of one run against what the case needs (``error``, ``warned`` or ``read``)."""
    if proc.returncode is not None and proc.returncode < 0:
        return "crash"
    err = proc.stderr
    if proc.returncode is None:
        return "hang"
    if "Traceback" in err or proc.returncode == 1 or "internal error" in err:
        return "traceback"
    last = [ln for ln in err.splitlines() if ln.strip()][-1:] or [""]
    if proc.returncode == 2:
        ok = " error: " in last[0] and last[0].startswith("cryounet ") and (not names or names in last[0])
        return "error" if ok else "traceback"
    if proc.returncode == 0:
        if expect == "warned":
            return "warned" if warning and warning in err else "silent"
        return "read" if expect == "read" else "silent"
    return "traceback"


def record(group: str, case: str, outcome: str, allowed: tuple[str, ...]) -> None:
    results[group][outcome] += 1
    if outcome not in allowed:
        problems.append(f"{group}: {case}: {outcome}")


def evaluate_truth(folder: Path, name: str, content: str, picks: Path) -> subprocess.CompletedProcess:
    """``cryounet evaluate`` of ``picks`` against a fresh truth folder holding one file: the
    micrograph ``mic_000``'s coordinates, with the suffix of ``name``, holding ``content``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / f"mic_000{Path(name).suffix}").write_text(content)
    return cli("evaluate", "--picks", picks, "--truth", folder, "--diameter", "20")


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------ set-up
def setup(work: Path) -> tuple[Path, Path, Path]:
    data = work / "data"
    proc = cli("simulate", "--output", data, "--micrographs", "4", "--size", "160", "--diameter", "20",
               "--particles", "15", "--seed", "5", "--overwrite", "--quiet")
    assert proc.returncode == 0, proc.stderr
    config = work / "tiny.json"
    config.write_text(json.dumps(TINY))
    model = work / "model"
    proc = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output", model,
               "--config", config, "--device", "cpu", "--overwrite", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return data, config, model


def _header_variant(template: bytes, values: dict[str, int]) -> bytes:
    header = bytearray(template)
    for name, value in values.items():
        header[4 * FIELDS[name]: 4 * FIELDS[name] + 4] = struct.pack("<i", value)
    return bytes(header)


# ------------------------------------------------------------------------------------ groups
def bad_micrographs(work: Path, data: Path, model: Path) -> None:
    """Header fuzzing and broken micrographs, all in one pick batch: each is read or skipped."""
    mics = work / "bad_mics"
    shutil.rmtree(mics, ignore_errors=True)
    mics.mkdir()
    template = (data / "mic_000.mrc").read_bytes()
    cases = {}
    for name in FIELDS:
        for value in VALUES:
            cases[f"h_{name}_{value}"] = _header_variant(template, {name: value})
    rng = np.random.default_rng(0)
    for i in range(36):
        chosen = {n: int(rng.choice(VALUES)) for n in FIELDS if rng.random() < 0.4}
        cases[f"combo_{i:02d}"] = _header_variant(template, chosen)
    cases["truncated"] = template[: len(template) // 2]
    cases["empty"] = b""
    cases["text"] = b"not an MRC file\n" * 100
    cases["huge_declared"] = _header_variant(template, {"nx": 60000, "ny": 60000})
    for name, content in cases.items():
        (mics / f"{name}.mrc").write_bytes(content)
    shutil.copy(data / "mic_001.mrc", mics / "good.mrc")
    out = work / "bad_mics_picks"
    proc = cli("pick", "--model", model, "--micrographs", mics, "--output", out, "--device", "cpu", "--overwrite",
               "--quiet", timeout=600)
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        record("bad micrographs (one pick batch)", "the batch", classify(proc, "read"), ("read",))
        return
    skipped = {Path(e["micrograph"]).stem: e["reason"] for e in json.loads((out / "skipped.json").read_text())}
    for name in list(cases) + ["good"]:
        if name in skipped:
            outcome = "skipped" if skipped[name].strip() else "silent"
        else:
            outcome = "read" if (out / f"{name}.star").is_file() else "silent"
        record("bad micrographs (one pick batch)", name, outcome, ("skipped", "read"))
    for command in ("train", "refine"):
        folder = work / f"{command}_bad"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(data, folder)
        (folder / "mic_001.mrc").write_bytes(cases["h_nx_-256"])
        if command == "train":
            proc = cli("train", "--micrographs", folder, "--coordinates", folder, "--diameter", "20", "--output",
                       work / "m_bad", "--config", work / "tiny.json", "--device", "cpu", "--overwrite")
        else:
            unlabelled = work / "unlabelled"
            unlabelled.mkdir(exist_ok=True)
            shutil.copy(data / "mic_002.mrc", unlabelled / "u_002.mrc")
            (unlabelled / "u_001.mrc").write_bytes(cases["h_nx_-256"])
            proc = cli("refine", "--model", model, "--micrographs", folder, "--coordinates", folder, "--unlabelled",
                       unlabelled, "--output", work / "r_bad", "--rounds", "1", "--config", work / "tiny.json",
                       "--device", "cpu", "--overwrite")
        record("bad micrographs (one pick batch)", f"{command} with a corrupt header",
               classify(proc, "warned", warning="skipping"), ("warned",))


def bad_coordinates(work: Path, data: Path, model: Path) -> None:
    group = "bad coordinate files"
    picks = work / "coord_picks"
    cli("pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output", picks, "--device", "cpu",
        "--overwrite", "--quiet")
    star = (data / "mic_000.star").read_text()
    xy = [ln.split()[:2] for ln in star.splitlines() if ln[:1].isdigit() or ln[:1] == "-"]
    csv = "\n".join(",".join(p) for p in xy) + "\n"
    cases = {
        "0-byte.star": ("", "error"),
        "no-loop.star": ("data_\n_rlnImageSize 128\n", "error"),
        "no-coordinate-x.star": ("data_\nloop_\n_rlnCoordinateY #1\n5\n", "error"),
        "nan.csv": ("1,2\nnan,3\n", "error"),
        "words.txt": ("1 2\nfoo bar\n", "error"),
        "box-3-columns.box": ("1 2 3\n", "error"),
        "semicolons.csv": (csv.replace(",", ";"), "read"),
        "tabs.txt": (csv.replace(",", "\t"), "read"),
        "duplicated.csv": (csv + csv, "warned"),
    }
    reference = evaluate_truth(work / "truth_ref", "mic_000.csv", csv, picks).stdout
    for name, (content, expect) in cases.items():
        proc = evaluate_truth(work / f"truth_{name}", name, content, picks)
        outcome = classify(proc, expect, names="mic_000", warning="duplicated coordinate(s) ignored")
        if expect in ("read", "warned") and outcome in ("read", "warned") and proc.stdout != reference:
            outcome = "silent"  # accepted, but the scores differ from the same picks written plainly
        record(group, name, outcome, (expect,))
    # a labelled micrograph whose file holds no particle is trained on only with a warning
    folder = work / "labelled_empty"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(data, folder)
    (folder / "mic_001.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n")
    proc = cli("train", "--micrographs", folder, "--coordinates", folder, "--diameter", "20", "--output",
               work / "m_empty", "--config", work / "tiny.json", "--device", "cpu", "--overwrite")
    record(group, "header-only labelled STAR", classify(proc, "warned", warning="without any particle"),
           ("warned",))


def bad_parameters(work: Path, data: Path, model: Path) -> None:
    group = "bad parameters"
    picks = work / "coord_picks"
    for value in ("nan", "inf", "-inf", "0.01", "2", "-1", "1e9", "ten"):
        for command, argv in (("pick", ["--model", model, "--micrographs", data / "mic_000.mrc",
                                        "--output", work / "p_param"]),
                              ("evaluate", ["--picks", picks, "--truth", data]),
                              ("postprocess", ["--picks", picks, "--output", work / "pp_param"]),
                              ("train", ["--micrographs", data, "--coordinates", data, "--output", work / "t_param"])):
            proc = cli(command, *argv, "--diameter", value)
            record(group, f"{command} --diameter {value}", classify(proc, "error", names="--diameter"), ("error",))
    for value in ("nan", "1.5", "-0.1", "x"):
        proc = cli("pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output", work / "p_param",
                   "--threshold", value)
        record(group, f"pick --threshold {value}", classify(proc, "error", names="--threshold"), ("error",))
    for option, value in (("--threshold", "nan"), ("--nms-distance", "nan"), ("--edge-distance", "-1"),
                          ("--max-per-micrograph", "-1")):
        proc = cli("postprocess", "--picks", picks, "--output", work / "pp_param", "--diameter", "20", option, value)
        record(group, f"postprocess {option} {value}", classify(proc, "error", names=option), ("error",))
    for option, value in (("--epochs", "0"), ("--seed", "-1"), ("--epochs", "1.5")):
        proc = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output",
                   work / "t_param", option, value)
        record(group, f"train {option} {value}", classify(proc, "error", names=option), ("error",))
    configs = {"learning rate 1e9": {"train": {"learning_rate": 1e9}}, "depth 40": {"model": {"depth": 40}},
               "huge network": {"model": {"base_channels": 128, "depth": 6}},
               "threshold 1.5": {"pick": {"threshold": 1.5}}, "nms NaN": {"pick": {"nms_radius": float("nan")}},
               "overlap >= tile": {"pick": {"tile_size": 512, "tile_overlap": 600}},
               "unknown key": {"train": {"epochz": 3}},
               "wrong type": {"train": {"epochs": "many"}}, "patch 1e6": {"train": {"patch_size": 10**6}}}
    for name, content in configs.items():
        path = work / "bad_config.json"
        path.write_text(json.dumps(content))
        proc = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output",
                   work / "t_param", "--config", path, "--device", "cpu")
        record(group, f"config: {name}", classify(proc, "error", names="bad_config.json"), ("error",))


class _Exploit:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def hostile_models(work: Path, data: Path, model: Path) -> None:
    group = "hostile model files"
    from safetensors.torch import load_file, save_file

    def variant(name: str, change) -> Path:
        folder = work / f"model_{name}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(model, folder)
        change(folder)
        return folder

    def edit_config(**changes):
        def change(folder: Path) -> None:
            data_ = json.loads((folder / "config.json").read_text())
            for key, value in changes.items():
                if key == "depth":
                    data_["config"]["model"]["depth"] = value
                else:
                    data_[key] = value
            (folder / "config.json").write_text(json.dumps(data_))
        return change

    def nan_weights(folder: Path) -> None:
        state = load_file(str(folder / "model.safetensors"))
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = state[name] * float("nan")
        save_file(state, str(folder / "model.safetensors"))

    exploit_target = work / "EXPLOITED"
    cases = {
        "depth 40": edit_config(depth=40),
        "format version 99": edit_config(format_version=99),
        "diameter -1": edit_config(diameter_px=-1),
        "threshold 2": edit_config(threshold=2),
        "NaN weights": nan_weights,
        "truncated weights": lambda f: (f / "model.safetensors").write_bytes(
            (f / "model.safetensors").read_bytes()[:200]),
        "pickle as weights": lambda f: (f / "model.safetensors").write_bytes(
            pickle.dumps(_Exploit(exploit_target))),
        "config not JSON": lambda f: (f / "config.json").write_text("{not json"),
        "config missing": lambda f: (f / "config.json").unlink(),
        "unfinished training": lambda f: (f / ".cryounet-output.json").write_text(
            json.dumps({"command": "train", "complete": False})),
    }
    for name, change in cases.items():
        folder = variant(name.replace(" ", "_"), change)
        proc = cli("pick", "--model", folder, "--micrographs", data / "mic_000.mrc", "--output", work / "p_hostile",
                   "--device", "cpu", "--overwrite")
        record(group, f"pick --model: {name}", classify(proc, "error", names=folder.name), ("error",))
    # pickles where a checkpoint or a config is expected: refused, never executed
    folder = variant("pickled_checkpoint", lambda f: (f / "checkpoint.pt").write_bytes(
        pickle.dumps({"model": _Exploit(exploit_target)})))
    (folder / ".cryounet-output.json").write_text(json.dumps({"command": "train", "complete": False}))
    proc = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output", folder,
               "--config", work / "tiny.json", "--device", "cpu", "--resume")
    record(group, "train --resume: malicious checkpoint.pt", classify(proc, "error", names="checkpoint.pt"),
           ("error",))
    pickled_config = work / "pickled.json"
    pickled_config.write_bytes(pickle.dumps(_Exploit(exploit_target)))
    proc = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output",
               work / "t_pickle", "--config", pickled_config, "--device", "cpu")
    record(group, "train --config: a pickle", classify(proc, "error", names="pickled.json"), ("error",))
    if exploit_target.exists():
        problems.append("hostile model files: a pickle was executed")
        results[group]["traceback"] += 1


def outputs_and_os(work: Path, data: Path, model: Path) -> None:
    group = "outputs and OS errors"

    def users_folder(name: str, files: dict[str, str]) -> Path:
        folder = work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for file, text in files.items():
            (folder / file).write_text(text)
        return folder

    def guarded(case: str, folder: Path, argv: list, names: str) -> None:
        before = digest(folder)
        outcome = classify(cli(*argv), "error", names=names)
        if digest(folder) != before:
            outcome = "data loss"
        record(group, case, outcome, ("error",))

    mine = users_folder("users_picks", {"mic_000.star": "my manual picks"})
    guarded("pick into a folder with the user's picks", mine,
            ["pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output", mine, "--device", "cpu"],
            "users_picks")
    picks = work / "coord_picks"
    mine = users_folder("users_post", {"keep.star": "mine"})
    guarded("postprocess into the user's folder", mine,
            ["postprocess", "--picks", picks, "--output", mine, "--diameter", "20"], "users_post")
    trained = work / "users_model"
    shutil.rmtree(trained, ignore_errors=True)
    shutil.copytree(model, trained)
    guarded("train onto an existing model", trained,
            ["train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output", trained,
             "--config", work / "tiny.json", "--device", "cpu"], "users_model")
    dataset = work / "users_dataset"
    shutil.rmtree(dataset, ignore_errors=True)
    shutil.copytree(data, dataset)
    guarded("simulate into an existing dataset", dataset,
            ["simulate", "--output", dataset, "--micrographs", "1", "--size", "64"], "users_dataset")
    guarded("refine onto an existing model", trained,
            ["refine", "--model", model, "--micrographs", data, "--coordinates", data, "--output", trained,
             "--device", "cpu"], "users_model")
    index_name = users_folder("index_name", {})
    shutil.copy(data / "mic_000.mrc", index_name / "coordinates.mrc")
    record(group, "a micrograph named coordinates.mrc",
           classify(cli("pick", "--model", model, "--micrographs", index_name, "--output", work / "p_index"),
                    "error", names="coordinates.mrc"), ("error",))
    a_file = work / "a_file"
    a_file.write_text("x")
    for command, argv in (("pick", ["--model", model, "--micrographs", data / "mic_000.mrc"]),
                          ("train", ["--micrographs", data, "--coordinates", data, "--diameter", "20"])):
        record(group, f"{command} --output is a file",
               classify(cli(command, *argv, "--output", a_file, "--device", "cpu"), "error", names="a_file"),
               ("error",))
    for kind in ("folder", "binary", "latin-1"):
        path = work / f"cfg_{kind}"
        shutil.rmtree(path, ignore_errors=True)
        if kind == "folder":
            path.mkdir()
        else:
            path.write_bytes(os.urandom(64) if kind == "binary" else '{"a": "é"}'.encode("latin-1"))
        for option in ("--config", "--datasets"):
            argv = (["--micrographs", data, "--coordinates", data, "--diameter", "20"] if option == "--config" else [])
            proc = cli("train", *argv, option, path, "--output", work / "t_cfg", "--device", "cpu")
            record(group, f"train {option} is a {kind} file", classify(proc, "error", names=path.name), ("error",))
    record(group, "evaluate --json into a file used as a folder",
           classify(cli("evaluate", "--picks", picks, "--truth", data, "--diameter", "20", "--json",
                        a_file / "s.json"), "error", names="a_file"), ("error",))
    with _mounted(work / "ro", "ro") as read_only:
        if read_only is not None:
            record(group, "pick into a read-only folder",
                   classify(cli("pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output",
                                read_only / "picks"), "error", names="picks"), ("error",))
    with _mounted(work / "full", "tmpfs") as full:
        if full is not None:
            (full / "filler").write_bytes(b"\0" * (250 * 1024))
            proc = cli("pick", "--model", model, "--micrographs", *sorted(data.glob("*.mrc")), "--output",
                       full / "picks", "--device", "cpu", "--threshold", "0")
            outcome = classify(proc, "error", names="space")
            if list((full / "picks").glob(".*.tmp")):
                outcome = "silent"
            record(group, "pick onto a full disk", outcome, ("error",))
    checkpoint_cases(work, data, group)


@contextlib.contextmanager
def _mounted(folder: Path, kind: str):
    """A read-only bind mount or a 256 KiB tmpfs at ``folder`` (root only; None when not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "ro":
        ok = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0 and \
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode == 0
    else:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                            capture_output=True).returncode == 0
    try:
        yield folder if ok else None
        if not ok:
            print(f"reliability: cannot mount {kind} here; that case is not run")
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def _interrupted_training(work: Path, data: Path, name: str, extra: float) -> Path:
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-m", "cryounet", "train", "--micrographs", data, "--coordinates", data,
                             "--diameter", "20", "--output", folder, "--config", work / "tiny.json", "--device",
                             "cpu", "--quiet"], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while not (folder / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(extra)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return folder


def checkpoint_cases(work: Path, data: Path, group: str) -> None:
    import torch

    for damage in ("truncated", "foreign", "other network"):
        folder = _interrupted_training(work, data, f"ckpt_{damage.replace(' ', '_')}", 0.0)
        checkpoint = folder / "checkpoint.pt"
        if not checkpoint.exists():
            continue
        if damage == "truncated":
            checkpoint.write_bytes(checkpoint.read_bytes()[:300])
        elif damage == "foreign":
            torch.save({"weights": torch.zeros(2)}, checkpoint)
        else:
            state = torch.load(checkpoint, weights_only=True)
            state["model"] = {k: torch.zeros(1) for k in state["model"]}
            torch.save(state, checkpoint)
        proc = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output", folder,
                   "--config", work / "tiny.json", "--device", "cpu", "--resume")
        record(group, f"train --resume: {damage} checkpoint", classify(proc, "error", names="checkpoint.pt"),
               ("error",))


def kills(work: Path, data: Path, model: Path) -> None:
    group = "killed runs (SIGKILL), then resumed or re-run"
    reference = work / "kill_reference"
    proc = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output", reference,
               "--config", work / "tiny.json", "--device", "cpu", "--overwrite", "--quiet")
    assert proc.returncode == 0, proc.stderr
    for i, extra in enumerate(np.random.default_rng(1).uniform(0.0, 3.0, 4)):
        folder = _interrupted_training(work, data, f"killed_{i}", float(extra))
        refused = cli("pick", "--model", folder, "--micrographs", data / "mic_000.mrc", "--output",
                      work / f"killed_picks_{i}")
        accepted_partial = refused.returncode == 0 and (folder / ".cryounet-output.json").exists() and \
            '"complete": false' in (folder / ".cryounet-output.json").read_text()
        finished = '"complete": true' in (folder / ".cryounet-output.json").read_text()
        resumed = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output", folder,
                      "--config", work / "tiny.json", "--device", "cpu", "--quiet", "--resume")
        # A run that finished before the kill is not resumed ("already finished: nothing to resume").
        not_resumed = finished and resumed.returncode == 2 and "already finished" in resumed.stderr
        same = (resumed.returncode == 0 or not_resumed) and \
            (folder / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
        outcome = "read" if same and not accepted_partial else ("data loss" if accepted_partial else "silent")
        record(group, f"train killed at +{extra:.2f} s, resumed", outcome, ("read",))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "reliability.json")
    parser.add_argument("--round", choices=("1", "2", "all"), default="all", help="which groups to run")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.modules.setdefault("reliability", sys.modules[__name__])  # round two records into these results
    from reliability_round2 import GROUPS as ROUND_TWO

    groups = ((bad_micrographs, bad_coordinates, bad_parameters, hostile_models, outputs_and_os, kills)
              if args.round != "2" else ()) + (ROUND_TWO if args.round != "1" else ())
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cryounet-reliability-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, _, model = setup(work)
        for group in groups:
            group(work, data, model)
    columns = ("error", "skipped", "warned", "read", "traceback", "silent", "data loss", "hang", "crash")
    total = Counter()
    for group, counts in results.items():
        total.update(counts)
        print(f"reliability {group}: {sum(counts.values())} cases, " +
              ", ".join(f"{c} {counts[c]}" for c in columns))
    print(f"reliability total: {sum(total.values())} cases, " + ", ".join(f"{c} {total[c]}" for c in columns) +
          f" ({(time.monotonic() - t0) / 60:.1f} min)")
    for problem in problems:
        print(f"reliability problem: {problem}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    rows = [[g, sum(c.values()), *(c[k] for k in columns)] for g, c in results.items()]
    rows.append(["total", sum(total.values()), *(total[k] for k in columns)])
    code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    args.json.write_text(json.dumps({
        "id": "reliability", "title": "Reliability audit: the real CLI on bad input, limits and signals",
        "command": f"python bench/reliability.py --round {args.round}",
        "machine": f"{os.cpu_count()}-core {platform.machine()} VM, as root, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"), "code": code.strip(),
        "table": {"columns": ["group", "cases", *columns], "rows": rows},
        "notes": problems or ["no failure: no traceback, silent misreading, data loss, hang or crash"],
        "minutes": round((time.monotonic() - t0) / 60, 1)}, indent=1) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
