"""The audit's second round (issue 31): what ``--overwrite`` may remove, concurrent runs, the
working folder's code, limits and signals, model files tampered with, coordinate layouts of other
programs, micrograph variants and shard merges. Each group runs the real CLI, as the first round's;
``bench/reliability.py`` runs both rounds.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from reliability import ENV, REPO, TINY, classify, cli, evaluate_truth, record

SETUP_FAILED = "the case could not be set up"


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative path -> hash)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _guarded(group: str, case: str, folder: Path, argv: list, expect: str, names: str = "",
             keep: list[str] | None = None) -> None:
    """Run a command that must not change ``folder`` (or, with ``keep``, must keep those files)."""
    before = tree_digest(folder)
    proc = cli(*argv)
    outcome = classify(proc, expect, names=names)
    after = tree_digest(folder) if folder.exists() else {}
    lost = [name for name in (keep if keep is not None else before) if before.get(name) != after.get(name)]
    if lost:
        outcome = "data loss"
    record(group, case, outcome, (expect,))


def _fresh_copy(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


# ------------------------------------------------------------------------------- output policy
def output_policy(work: Path, data: Path, model: Path) -> None:
    group = "--overwrite and folders of others (round two)"
    own = _fresh_copy(data, work / "r2_data")
    _guarded(group, "pick writing into its own input folder", own,
             ["pick", "--model", model, "--micrographs", own, "--output", own, "--overwrite", "--device", "cpu"],
             "error", names="r2_data")
    _guarded(group, "train writing into the folder of its inputs", own,
             ["train", "--micrographs", own, "--coordinates", own, "--diameter", "20", "--output", own, "--config",
              work / "tiny.json", "--overwrite", "--device", "cpu"], "error", names="r2_data")
    holder = work / "r2_holder"
    shutil.rmtree(holder, ignore_errors=True)
    inside = _fresh_copy(data, holder / "mics")
    _guarded(group, "pick --overwrite into the folder that holds its micrograph folder", inside,
             ["pick", "--model", model, "--micrographs", inside, "--output", holder, "--overwrite", "--device", "cpu"],
             "error", names="r2_holder")
    trained = _fresh_copy(model, work / "r2_model")
    picks = work / "r2_picks"
    proc = cli("pick", "--model", model, "--micrographs", data / "mic_000.mrc", data / "mic_001.mrc", "--output",
               picks, "--device", "cpu", "--overwrite", "--quiet")
    if proc.returncode != 0:
        record(group, "set-up pick", "traceback", ())
        return
    for command, argv in (("postprocess", ["--picks", picks, "--diameter", "20"]),
                          ("merge", ["--picks", picks]),
                          ("simulate", ["--micrographs", "1", "--size", "64"]),
                          ("pick", ["--model", model, "--micrographs", data / "mic_002.mrc", "--device", "cpu"])):
        _guarded(group, f"{command} --output MODEL --overwrite", trained,
                 [command, *argv, "--output", trained, "--overwrite"], "error", names="r2_model")
    (picks / "my_notes.txt").write_text("what I saw on mic_000\n")
    (picks / "Extract" / "job011").mkdir(parents=True)
    (picks / "Extract" / "job011" / "particles.star").write_text("data_\n")
    _guarded(group, "re-pick --overwrite keeps the user's notes and a RELION job folder", picks,
             ["pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output", picks, "--overwrite",
              "--device", "cpu", "--quiet"], "read", keep=["my_notes.txt", "Extract/job011/particles.star"])
    unmarked = work / "r2_unmarked"
    shutil.rmtree(unmarked, ignore_errors=True)
    unmarked.mkdir()
    (unmarked / "run_it1_data.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2\n")
    (unmarked / "mic_003_manualpick.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n")
    _guarded(group, "pick --overwrite in a folder CryoUNet did not make keeps other STAR files", unmarked,
             ["pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output", unmarked, "--overwrite",
              "--device", "cpu", "--quiet"], "read", keep=["run_it1_data.star", "mic_003_manualpick.star"])


def concurrency(work: Path, data: Path, model: Path) -> None:
    group = "concurrent runs into one folder"
    folder = work / "r2_busy_model"
    shutil.rmtree(folder, ignore_errors=True)
    slow = work / "r2_slow.json"  # a training that runs until it is stopped: the second surely meets it
    slow.write_text(json.dumps({**TINY, "train": {**TINY["train"], "epochs": 1000, "patience": 0}}))
    first = subprocess.Popen([sys.executable, "-m", "cryounet", "train", "--micrographs", data, "--coordinates", data,
                              "--diameter", "20", "--output", folder, "--config", slow, "--device", "cpu",
                              "--quiet"], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 60
    while not (folder / "checkpoint.pt").exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output", folder,
                 "--config", work / "tiny.json", "--device", "cpu", "--overwrite")
    still_training = first.poll() is None
    first.send_signal(signal.SIGTERM)
    first_err = first.communicate(timeout=600)[1]
    outcome = classify(second, "error", names="r2_busy_model")
    if not still_training or first.returncode != 143 or not (folder / "checkpoint.pt").exists():
        outcome = "data loss" if outcome != "error" else "traceback"
        print(f"reliability: the first training did not run on to its SIGTERM: {first_err[-300:]}")
    record(group, "a second train --overwrite while the first trains", outcome, ("error",))
    many = work / "r2_many"
    shutil.rmtree(many, ignore_errors=True)
    proc = cli("simulate", "--output", many, "--micrographs", "4", "--size", "1024", "--diameter", "20",
               "--particles", "40", "--seed", "9", "--quiet")
    if proc.returncode != 0:
        record(group, "set-up of the pick race", "traceback", ())
        return
    for i in range(36):  # enough micrographs that the first pick is still writing when the second starts
        shutil.copy(many / f"mic_00{i % 4}.mrc", many / f"m{i:02d}.mrc")
    picks = work / "r2_busy_picks"
    shutil.rmtree(picks, ignore_errors=True)
    first = subprocess.Popen([sys.executable, "-m", "cryounet", "pick", "--model", model, "--micrographs", many,
                              "--output", picks, "--device", "cpu", "--quiet"], cwd=REPO, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (picks / "m00.star").exists() and first.poll() is None:
        time.sleep(0.02)
    racing = first.poll() is None
    second = cli("pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output", picks, "--overwrite",
                 "--device", "cpu")
    first.communicate(timeout=600)
    outcome = classify(second, "error", names="r2_busy_picks")
    index = (picks / "coordinates.star").read_text() if (picks / "coordinates.star").exists() else ""
    if not racing:  # an ordinary --overwrite of a finished run: say so rather than count a race
        record(group, "pick --overwrite after another pick (no race: the first ended first)",
               classify(second, "read"), ("read",))
        return
    if first.returncode != 0 or index.count(".mrc") < 40:
        outcome = "data loss"
    record(group, "pick --overwrite while another pick writes the folder", outcome, ("error",))


# ------------------------------------------------------------------------------- process
def _run(argv: list[str], cwd: Path, timeout: float = 120, env: dict | None = None,
         shell_prefix: str = "") -> subprocess.CompletedProcess:
    """Run a command (a console script or python) in ``cwd``; a hang becomes returncode None."""
    command = argv if not shell_prefix else ["bash", "-c", f"{shell_prefix}; exec \"$@\"", "_", *argv]
    try:
        return subprocess.run(command, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(command, None, exc.stdout or "", exc.stderr or "")  # type: ignore[arg-type]


def _outcome(proc: subprocess.CompletedProcess, expect: str, names: str = "") -> str:
    if proc.returncode is None:
        return "hang"
    if proc.returncode < 0:
        return "crash"
    return classify(proc, expect, names=names)


def process_and_limits(work: Path, data: Path, model: Path) -> None:
    group = "working folder, limits and signals"
    hostile = work / "r2_downloaded"
    shutil.rmtree(hostile, ignore_errors=True)
    (hostile / "numpy").mkdir(parents=True)
    (hostile / "numpy" / "__init__.py").write_text("raise SystemExit(7)\n")
    for name in ("random.py", "json.py", "logging.py"):
        (hostile / name).write_text("raise SystemExit(5)\n")
    shutil.copy(data / "mic_000.mrc", hostile / "mic_000.mrc")
    script = Path(sys.executable).with_name("cryounet")
    for label, argv in (("the cryounet command", [str(script), "--version"]),
                        ("python -m cryounet", [sys.executable, "-m", "cryounet", "--version"]),
                        ("a pick", [str(script), "pick", "--model", str(model), "--micrographs", "mic_000.mrc",
                                    "--output", "picks", "--device", "cpu", "--quiet"])):
        if not script.exists() and "cryounet command" in label:
            continue
        record(group, f"{label} in a folder holding numpy/ and random.py",
               _outcome(_run(argv, hostile), "read"), ("read",))
    for threads in ("64", "16"):
        proc = _run([sys.executable, "-m", "cryounet", "pick", "--model", str(model), "--micrographs",
                     str(data / "mic_000.mrc"), "--output", str(work / f"r2_vmem_{threads}"), "--overwrite",
                     "--device", "cpu", "--threads", threads], REPO, timeout=90, shell_prefix="ulimit -v 2500000")
        record(group, f"pick --threads {threads} under ulimit -v 2.5 GB",
               "read" if proc.returncode == 0 else _outcome(proc, "error"), ("read", "error"))
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129)):
        folder = work / f"r2_signal_{sig.name}"
        shutil.rmtree(folder, ignore_errors=True)
        proc = subprocess.Popen([sys.executable, "-m", "cryounet", "train", "--micrographs", data, "--coordinates",
                                 data, "--diameter", "20", "--output", folder, "--config", work / "tiny.json",
                                 "--epochs", "8", "--device", "cpu"], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        while not (folder / "checkpoint.pt").exists() and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1]
        resumed = cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output", folder,
                      "--config", work / "tiny.json", "--epochs", "8", "--device", "cpu", "--resume", "--quiet")
        ok = proc.returncode == code and sig.name in err and resumed.returncode == 0
        record(group, f"train ended by {sig.name}, then --resume", "read" if ok else "silent", ("read",))
    for label, text in (("a seed of 2**64", None), ("a 100,000-deep JSON config", "[" * 100_000 + "]" * 100_000),
                        ("a config with a key given twice", '{"train": {"epochs": 3, "epochs": 50}}')):
        argv = ["train", "--micrographs", data, "--coordinates", data, "--diameter", "20", "--output",
                work / "r2_cfg", "--device", "cpu", "--overwrite"]
        if text is None:
            argv += ["--seed", str(2 ** 64)]
        else:
            path = work / "r2_config.json"
            path.write_text(text)
            argv += ["--config", path]
        record(group, label, classify(cli(*argv), "error"), ("error",))
    long_folder = work / "r2_long"
    shutil.rmtree(long_folder, ignore_errors=True)
    long_folder.mkdir()
    shutil.copy(data / "mic_000.mrc", long_folder / ("m" * 240 + ".mrc"))
    shutil.copy(data / "mic_001.mrc", long_folder / "short.mrc")
    proc = cli("pick", "--model", model, "--micrographs", long_folder, "--output", work / "r2_long_picks",
               "--overwrite", "--device", "cpu")
    picked = (work / "r2_long_picks" / "short.star").exists()
    record(group, "a 240-character micrograph name beside a short one",
           "read" if proc.returncode == 0 and picked else _outcome(proc, "read"), ("read",))
    raw = os.fsencode(work) + b"/r2_latin"
    shutil.rmtree(raw, ignore_errors=True)
    os.makedirs(raw)
    shutil.copy(os.fsencode(data / "mic_000.mrc"), raw + b"/caf\xe9.mrc")
    listing = work / "r2_list.txt"
    listing.write_bytes(raw + b"/caf\xe9.mrc\n")
    proc = cli("pick", "--model", model, "--micrographs", f"@{listing}", "--output", work / "r2_latin_picks",
               "--overwrite", "--device", "cpu")
    record(group, "a Latin-1 file name in an @list", _outcome(proc, "read"), ("read", "error"))


# ------------------------------------------------------------------------------- model files
def model_integrity(work: Path, data: Path, model: Path) -> None:
    group = "model files tampered with (round two)"
    graph = model / "model.onnx"
    if not graph.exists():
        record(group, "the model folder has no model.onnx", "silent", ())
        return
    tampered = _fresh_copy(model, work / "r2_tampered")
    raw = bytearray((tampered / "model.onnx").read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = bytes(64)
    (tampered / "model.onnx").write_bytes(bytes(raw))
    proc = cli("pick", "--model", tampered, "--micrographs", data / "mic_000.mrc", "--output", work / "r2_t_picks",
               "--overwrite", "--device", "cpu")
    reference = cli("pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output", work / "r2_r_picks",
                    "--overwrite", "--device", "cpu", "--backend", "torch")
    same = proc.returncode == 0 and reference.returncode == 0 and \
        (work / "r2_t_picks" / "mic_000.star").read_text() == (work / "r2_r_picks" / "mic_000.star").read_text()
    warned = "model.onnx" in proc.stderr
    record(group, "a damaged model.onnx: PyTorch picks, with a warning", "warned" if same and warned else "silent",
           ("warned",))
    proc = cli("pick", "--model", tampered, "--micrographs", data / "mic_000.mrc", "--output", work / "r2_t_picks2",
               "--overwrite", "--device", "cpu", "--backend", "onnxruntime")
    record(group, "a damaged model.onnx with --backend onnxruntime", classify(proc, "error", names="model.onnx"),
           ("error",))


# ------------------------------------------------------------------------------- coordinates
def _xy(star: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()[:2]) for line in star.read_text().splitlines() if line[:1].isdigit()]


def coordinate_layouts(work: Path, data: Path, model: Path) -> None:
    group = "coordinate layouts of other programs"
    picks = work / "coord_picks"
    if not (picks / "mic_000.star").exists():
        cli("pick", "--model", model, "--micrographs", data / "mic_000.mrc", "--output", picks, "--device", "cpu",
            "--overwrite", "--quiet")
    xy = _xy(data / "mic_000.star")
    truth = work / "r2_truth_ref"
    reference = evaluate_truth(truth, "mic_000.csv", "".join(f"{x},{y}\n" for x, y in xy), picks).stdout
    star_rows = "".join(f"{x}\t{y}\n" for x, y in xy)
    cases = {
        "topaz.txt": ("image_name\tx_coord\ty_coord\tscore\n" + "".join(f"000\t{x}\t{y}\t1.5\n" for x, y in xy),
                      ("read", "error")),
        "pandas.csv": (",x,y\n" + "".join(f"{i},{x},{y}\n" for i, (x, y) in enumerate(xy)), ("read",)),
        "swapped.csv": ("y,x\n" + "".join(f"{y},{x}\n" for x, y in xy), ("read",)),
        "two_blocks.star": ("data_a\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n" + star_rows[: len(star_rows) // 2]
                            + "\ndata_b\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                            + star_rows[len(star_rows) // 2:], ("read", "error")),
        "no_data.star": ("loop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n" + star_rows, ("read", "error")),
        "repeated.star": ("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateX #3\n"
                          + "".join(f"{x}\t{y}\t0\n" for x, y in xy), ("error",)),
        "origin.star": ("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnOriginX #3\n_rlnOriginY #4\n"
                        + "".join(f"{float(x) + 3}\t{float(y) - 2}\t3\t-2\n" for x, y in xy), ("read", "error")),
    }
    for name, (content, allowed) in cases.items():
        proc = evaluate_truth(work / f"r2_truth_{Path(name).stem}", name, content, picks)
        outcome = classify(proc, "read")
        if outcome == "read" and proc.stdout != reference:
            outcome = "silent"
        record(group, name, outcome, allowed)
    relion = work / "r2_relion_names"
    shutil.rmtree(relion, ignore_errors=True)
    relion.mkdir()
    (relion / "mic_000_autopick.star").write_text((data / "mic_000.star").read_text())
    proc = cli("evaluate", "--picks", picks, "--truth", relion, "--diameter", "20")
    record(group, "truth named <mic>_autopick.star", "read" if proc.stdout == reference else classify(proc, "read"),
           ("read",))
    nan_picks = _fresh_copy(picks, work / "r2_nan_picks")
    star = nan_picks / "mic_000.star"
    star.write_text(star.read_text().replace("\t0.9", "\tnan", 3).replace("\t1.0", "\tnan", 3))
    if "nan" in star.read_text():
        record(group, "picks with NaN scores", classify(cli("evaluate", "--picks", nan_picks, "--truth", truth,
                                                            "--diameter", "20"), "error"), ("error",))


# ------------------------------------------------------------------------------- micrographs
def micrograph_variants(work: Path, data: Path, model: Path) -> None:
    group = "micrograph variants (round two)"
    import mrcfile

    with mrcfile.open(data / "mic_000.mrc", permissive=True) as mrc:
        image = np.asarray(mrc.data, dtype=np.float32)
    folder = work / "r2_mics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    scaled = (image - image.min()) / (np.ptp(image) or 1.0) * 255.0
    with mrcfile.new(folder / "float.mrc") as mrc:
        mrc.set_data(np.round(scaled).astype(np.float32))
    signed = np.round(scaled).astype(np.uint8).view(np.int8)
    with mrcfile.new(folder / "imod_unsigned.mrc") as mrc:
        mrc.set_data(signed)
    raw = bytearray((folder / "imod_unsigned.mrc").read_bytes())
    raw[152:156] = struct.pack("<i", 1146047817)  # IMOD stamp, flags 0: bytes are unsigned
    raw[156:160] = struct.pack("<i", 0)
    (folder / "imod_unsigned.mrc").write_bytes(bytes(raw))
    padded = scaled.copy()
    padded[:, : int(0.4 * padded.shape[1])] = 0.0
    with mrcfile.new(folder / "padded.mrc") as mrc:
        mrc.set_data(padded.astype(np.float32))
    hashed = work / "r2_hash#folder"
    shutil.rmtree(hashed, ignore_errors=True)
    hashed.mkdir()
    shutil.copy(folder / "float.mrc", hashed / "mic#1.mrc")
    out = work / "r2_mic_picks"
    proc = cli("pick", "--model", model, "--micrographs", folder, hashed / "mic#1.mrc", "--output", out, "--overwrite",
               "--device", "cpu")
    if proc.returncode != 0:
        record(group, "the batch", _outcome(proc, "read"), ("read",))
        return
    counts = {p.stem: len(_xy(p)) for p in out.glob("*.star") if p.name != "coordinates.star"}
    same = _xy(out / "float.star") == _xy(out / "imod_unsigned.star")
    record(group, "IMOD-stamped unsigned bytes read as unsigned", "read" if same else "silent", ("read",))
    reference = counts.get("float", 0)
    right = (padded.shape[1] - int(0.4 * padded.shape[1])) / padded.shape[1]
    sane = counts.get("padded", 10 ** 6) <= max(3, 1.5 * reference * right + 2)
    record(group, "40 % zero padding does not multiply the picks", "read" if sane else "silent", ("read",))
    index = cli("evaluate", "--picks", out, "--truth", out, "--diameter", "20")
    record(group, "a '#' in a micrograph path survives the index", _outcome(index, "read"), ("read",))


# ------------------------------------------------------------------------------- merge
def shard_merges(work: Path, data: Path, model: Path) -> None:
    group = "merging shards"
    shards = []
    for k in (1, 2, 3, 4):
        folder = work / f"r2_shard_{k}"
        proc = cli("pick", "--model", model, "--micrographs", data, "--shard", f"{k}/4", "--output", folder,
                   "--overwrite", "--device", "cpu", "--quiet")
        if proc.returncode != 0:
            record(group, "set-up", "traceback", ())
            return
        shards.append(folder)
    other = work / "r2_shard_3_other"
    cli("pick", "--model", model, "--micrographs", data, "--shard", "3/4", "--output", other, "--overwrite",
        "--threshold", "0.2", "--device", "cpu", "--quiet")
    for label, folders, names in (("a shard missing (3 of 4)", [shards[0], shards[1], shards[3]], "3/4"),
                                  ("a shard given twice", [shards[0], shards[1], shards[1], shards[3]], ""),
                                  ("a shard of another threshold", [shards[0], shards[1], other, shards[3]], "")):
        proc = cli("merge", "--picks", *folders, "--output", work / "r2_merged", "--overwrite")
        record(group, label, classify(proc, "error", names=names), ("error",))
    proc = cli("merge", "--picks", *shards, "--output", work / "r2_merged", "--overwrite")
    record(group, "all four shards", classify(proc, "read"), ("read",))


GROUPS = (output_policy, concurrency, process_and_limits, model_integrity, coordinate_layouts, micrograph_variants,
          shard_merges)
