"""GPU benchmark: picking throughput on real-size (4096 x 4096 float32) micrographs.

For each diameter, ``--distinct`` micrographs are made with ``cryounet simulate`` and listed under
``--micrographs`` names in turn (symbolic links: the files are read from the page cache, as on a
node whose file system keeps up). Sections (``--sections``, default all):

- ``stages``: one micrograph's stages timed in-process (reading and preprocessing, the network
  with and without TTA and in bfloat16, peaks), and the GPU's map against the CPU's.
- ``forward``: the network pass of test-time augmentation over one working image, in-process,
  under the engine's rules before 0.5 (symmetries one after another, cuDNN's default algorithms,
  pick.tile_size 1152) and with each change alone and together: symmetries as one batch,
  cuDNN's timed algorithm choice (benchmark), channels-last weights, one pass for the whole image
  (tile 2048), bfloat16 and float16.
- ``memory``: peak GPU memory of one TTA map of a 1311 and a 2048 px working image.
- ``steady``: ``pick_micrographs`` in-process over all the micrographs after a warm-up: the rate a
  long run settles at, under the rules before 0.5 (no worker threads, symmetries one after another,
  no cuDNN benchmark, tile 1152, the default layout) and today's (the GPU's machine settings:
  4 workers, tile 2048; and with 2 workers).
- ``startup``: where the first seconds of a ``cryounet pick`` process go (importing torch, starting
  CUDA, importing the engine, loading the model, the first and second pass).
- ``command``: the real ``cryounet pick --device cuda`` command in its own process, once on one
  micrograph and once on all, with and without TTA; micrographs per second after start-up =
  (N - 1) / (wall of N - wall of 1), and N / wall of N for the whole command.

    python bench/gpu.py --model MODEL [--diameters 108 50] [--micrographs 100] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "cryounet"]
#: ``command`` variants: extra ``cryounet pick`` arguments.
VARIANTS: dict[str, list[str]] = {"default": [], "no-tta": ["--no-tta"]}
#: ``forward`` variants: (symmetries together, cuDNN benchmark, channels-last, tile size, precision).
FORWARD: dict[str, tuple[bool, bool, bool, int, str]] = {
    "0.4 rules": (False, False, False, 1152, "float32"),
    "+together": (True, False, False, 1152, "float32"),
    "+benchmark": (False, True, False, 1152, "float32"),
    "+channels-last": (False, False, True, 1152, "float32"),
    "+tile 2048": (False, False, False, 2048, "float32"),
    "together+benchmark": (True, True, False, 1152, "float32"),
    "together+benchmark+tile 2048": (True, True, False, 2048, "float32"),
    "together+benchmark+channels-last+tile 2048": (True, True, True, 2048, "float32"),
    "together+benchmark+tile 2048, bf16": (True, True, False, 2048, "bfloat16"),
    "together+benchmark+tile 2048, fp16": (True, True, False, 2048, "float16"),
    "together+benchmark+channels-last": (True, True, True, 1152, "float32"),
}
SECTIONS = ("stages", "forward", "memory", "steady", "startup", "command")


def timed(cmd: list[str]) -> tuple[float, float] | None:
    """(wall seconds, peak RSS MiB) of one command in its own process; None if it failed."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"gpu: failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-2000:]}", flush=True)
        return None
    return wall, usage.ru_maxrss / 1024


def simulate(work: Path, diameter: float, size: int, distinct: int, count: int) -> tuple[Path, Path]:
    """(folder of one micrograph, folder of ``count``) for one diameter."""
    base = work / f"d{diameter:g}"

    def one(i: int) -> Path:
        folder = base / f"sim{i}"
        subprocess.run(PY + ["simulate", "--overwrite", "--output", str(folder), "--micrographs", "1",
                             "--size", str(size), "--diameter", str(diameter), "--particles", "300",
                             "--seed", str(i + 1), "--quiet"], check=True, cwd=REPO)
        return folder / "mic_000.mrc"

    with ThreadPoolExecutor(distinct) as pool:
        sources = list(pool.map(one, range(distinct)))
    single, many = base / "one", base / "many"
    for folder in (single, many):
        folder.mkdir(parents=True, exist_ok=True)
    (single / "mic_000.mrc").unlink(missing_ok=True)
    (single / "mic_000.mrc").symlink_to(sources[0])
    for i in range(count):
        link = many / f"mic_{i:03d}.mrc"
        link.unlink(missing_ok=True)
        link.symlink_to(sources[i % distinct])
    return single, many


def _picker(model: Path, diameter: float, device: str, precision: str = "float32", **pick):
    """A picker as ``cryounet pick`` makes it (the machine settings of ``device``), with ``pick`` changes."""
    from cryounet.device import machine_pick_settings
    from cryounet.inference.picker import Picker
    from cryounet.models.weights import load_model

    loaded = load_model(model, device)
    loaded.info.diameter_px = diameter
    loaded.info.config = loaded.info.config.updated({"pick": machine_pick_settings(device)})
    cfg = loaded.info.config.pick
    cfg.precision = precision
    for key, value in pick.items():
        setattr(cfg, key, value)
    return Picker([loaded], cfg, device)


def _clock(fn, repeat: int) -> float:
    """Seconds per call of ``fn`` after two warm-up calls (cuDNN's choice of algorithms, the allocator)."""
    fn()
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def stages(model: Path, micrograph: Path, diameter: float, device: str, repeat: int = 10) -> dict:
    """In-process seconds per micrograph of each stage on ``device``, and its map against the CPU's."""
    import numpy as np
    import torch

    from cryounet.io.mrc import read_micrograph

    gpu, gpu_bf16 = _picker(model, diameter, device), _picker(model, diameter, device, "bfloat16")
    image, scale = gpu.prepare(read_micrograph(micrograph))
    prob, spread = gpu.probability(image)
    thr = gpu.threshold()
    row = {
        "working_shape": list(image.shape),
        "prepare_s": _clock(lambda: gpu.prepare(read_micrograph(micrograph)), repeat),
        "network_s": _clock(lambda: gpu.probability(image), repeat),
        "network_bf16_s": _clock(lambda: gpu_bf16.probability(image), repeat),
        "finish_s": _clock(lambda: gpu.finish(prob, spread, scale, thr), repeat),
        "picks": len(gpu.finish(prob, spread, scale, thr)),
    }
    gpu.pick.tta = False
    row["network_no_tta_s"] = _clock(lambda: gpu.probability(image), repeat)
    cpu_prob = _picker(model, diameter, "cpu").probability(image)[0]
    row["max_abs_gpu_minus_cpu"] = float(np.abs(prob - cpu_prob).max())
    row["gpu"] = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    return row


def forward(model: Path, micrograph: Path, diameter: float, device: str, repeat: int = 20) -> list[dict]:
    """Seconds of one TTA map of the working image under each :data:`FORWARD` variant."""
    import numpy as np
    import torch

    from cryounet.inference.predict import forward_precision, predict_probability
    from cryounet.io.mrc import read_micrograph

    picker = _picker(model, diameter, device)
    network, image = picker.models[0].network, picker.prepare(read_micrograph(micrograph))[0]
    symmetries = picker.pick.tta_symmetries
    rows, reference = [], None
    for name, (together, benchmark, channels_last, tile, precision) in FORWARD.items():
        if precision == "float16" and not device.startswith("cuda"):
            continue
        torch.backends.cudnn.benchmark = benchmark
        network.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

        def run():
            with forward_precision(device, precision):
                return predict_probability(network, image, tile, 64, 1, True, device, symmetries, together)

        seconds = _clock(run, repeat)
        prob = run()
        reference = prob if reference is None else reference
        rows.append({"kind": "forward", "diameter": diameter, "variant": name, "seconds": seconds,
                     "working_shape": list(image.shape),
                     "max_abs_difference": float(np.abs(prob - reference).max())})
    return rows


def steady(model: Path, folder: Path, diameter: float, device: str, work: Path) -> list[dict]:
    """Micrographs per second of ``pick_micrographs`` in-process, after a warm-up of 5."""
    import torch

    from cryounet.inference.batch import pick_micrographs

    micrographs = sorted(folder.glob("*.mrc"))
    rows = []
    for name, workers, old_rules in (("0.4 rules", 0, True), ("0.5 rules, workers 2", 2, False),
                                     ("0.5 rules", None, False)):
        if old_rules:  # one step after another, symmetries in turn, cuDNN's defaults, tile 1152, NCHW
            picker = _picker(model, diameter, device, workers=0, tile_size=1152)
            picker.together = False
            torch.backends.cudnn.benchmark = False
            picker.models[0].network.to(memory_format=torch.contiguous_format)
        else:
            picker = _picker(model, diameter, device, **({} if workers is None else {"workers": workers}))
        pick_micrographs(picker, micrographs[:5], work / "warm-up", None, progress=False)
        t0 = time.perf_counter()
        summary = pick_micrographs(picker, micrographs, work / "steady", None, progress=False)
        seconds = time.perf_counter() - t0
        rows.append({"kind": "steady", "diameter": diameter, "variant": name, "micrographs": len(micrographs),
                     "seconds": seconds, "per_second": len(micrographs) / seconds, "picks": summary.total,
                     "workers": picker.pick.workers, "tile_size": picker.pick.tile_size})
    return rows


def memory(model: Path, diameter: float, device: str, sides: tuple[int, ...] = (1311, 2048)) -> list[dict]:
    """Peak GPU memory of one TTA map of a working image of each side (the engine's rules)."""
    import numpy as np
    import torch

    picker = _picker(model, diameter, device)
    rows = []
    for side in sides:
        image = np.random.default_rng(0).standard_normal((side, side)).astype(np.float32)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        picker.probability(image)
        rows.append({"kind": "memory", "diameter": diameter, "side": side, "tile_size": picker.pick.tile_size,
                     "peak_gib": torch.cuda.max_memory_allocated() / 1024 ** 3})
    return rows


STARTUP = """
import time; t0 = time.perf_counter(); marks = []
def mark(name): marks.append((name, time.perf_counter() - t0))
import torch; mark("import torch")
torch.cuda.init(); torch.zeros(1, device="cuda"); mark("start CUDA")
from cryounet.inference.picker import Picker; from cryounet.io.mrc import read_micrograph
from cryounet.models.weights import load_model; mark("import the engine")
m = load_model(MODEL, "cuda"); m.info.diameter_px = DIAMETER; p = Picker([m], m.info.config.pick, "cuda")
mark("load the model")
image = p.prepare(read_micrograph(MIC))[0]; mark("read and preprocess")
p.probability(image); mark("first pass (TTA)")
p.probability(image); mark("second pass (TTA)")
print(";".join(f"{n}={s:.3f}" for n, s in marks))
"""


def startup(model: Path, micrograph: Path, diameter: float) -> dict:
    """Cumulative seconds of a fresh process's start (interpreter start not included)."""
    code = (STARTUP.replace("MODEL", repr(str(model))).replace("DIAMETER", str(diameter))
            .replace("MIC", repr(str(micrograph))))
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    marks = dict(item.split("=") for item in out.stdout.strip().splitlines()[-1].split(";"))
    return {"kind": "startup", "diameter": diameter, "process_s": time.monotonic() - t0,
            **{k: float(v) for k, v in marks.items()}}


def command(model: Path, single: Path, many: Path, diameter: float, device: str, work: Path,
            count: int) -> list[dict]:
    rows = []
    for variant, extra in VARIANTS.items():
        base = PY + ["pick", "--model", str(model), "--diameter", str(diameter), "--device", device,
                     "--overwrite", "--quiet", *extra]
        one = timed(base + ["--micrographs", str(single), "--output", str(work / "picks-one")])
        all_ = timed(base + ["--micrographs", str(many), "--output", str(work / "picks-many")])
        if one is None or all_ is None:
            continue
        rows.append({"kind": "command", "diameter": diameter, "variant": variant, "micrographs": count,
                     "wall_one_s": one[0], "wall_all_s": all_[0],
                     "per_second": (count - 1) / max(all_[0] - one[0], 1e-9),
                     "per_second_whole": count / all_[0], "peak_rss_mib": max(one[1], all_[1])})
    return rows


def describe(row: dict) -> str:
    """The one-line result of a row."""
    d = f"d={row['diameter']:g}px"
    if row["kind"] == "stages":
        return (f"gpu stages {d} ({row['gpu']}, working {row['working_shape'][1]} px): prepare "
                f"{row['prepare_s'] * 1e3:.0f} ms, network TTA {row['network_s'] * 1e3:.1f} ms (bf16 "
                f"{row['network_bf16_s'] * 1e3:.1f} ms, no TTA {row['network_no_tta_s'] * 1e3:.1f} ms), peaks "
                f"{row['finish_s'] * 1e3:.0f} ms, {row['picks']} picks; max |GPU - CPU| probability "
                f"{row['max_abs_gpu_minus_cpu']:.1e}")
    if row["kind"] == "forward":
        return (f"gpu forward {d} (working {row['working_shape'][1]} px) {row['variant']}: "
                f"{row['seconds'] * 1e3:.1f} ms, max |difference| {row['max_abs_difference']:.1e}")
    if row["kind"] == "steady":
        return (f"gpu steady {d} {row['variant']} (workers {row['workers']}, tile {row['tile_size']}): "
                f"{row['micrographs']} micrographs in {row['seconds']:.1f} s, {row['per_second']:.1f}/s, "
                f"{row['picks']} picks")
    if row["kind"] == "memory":
        return (f"gpu memory: one TTA map of a {row['side']} px working image (tile {row['tile_size']}): peak "
                f"{row['peak_gib']:.2f} GiB allocated")
    if row["kind"] == "startup":
        marks = [k for k in row if k not in ("kind", "diameter", "process_s")]
        return (f"gpu startup {d}: " + ", ".join(f"{k} at {row[k]:.2f} s" for k in marks)
                + f"; whole process {row['process_s']:.2f} s")
    return (f"gpu command {row['variant']} {d}: {row['micrographs']} x 4k: wall {row['wall_all_s']:.1f} s (one "
            f"micrograph {row['wall_one_s']:.1f} s), {row['per_second']:.1f} micrographs/s after start-up, "
            f"{row['per_second_whole']:.1f}/s whole command, peak RSS {row['peak_rss_mib']:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder")
    parser.add_argument("--diameters", type=float, nargs="+", default=[108, 50], help="particle diameters in px")
    parser.add_argument("--size", type=int, default=4096, help="micrograph side in px")
    parser.add_argument("--micrographs", type=int, default=100, help="micrographs in the batch runs")
    parser.add_argument("--distinct", type=int, default=5, help="distinct simulated micrographs per diameter")
    parser.add_argument("--sections", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryounet-gpu-bench"))
    parser.add_argument("--json", type=Path, help="also write every result row to this file")
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (to try it out)")
    args = parser.parse_args()
    model = args.model.resolve()
    rows: list[dict] = []

    def record(new: list[dict]) -> None:
        for row in new:
            rows.append(row)
            print(describe(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")

    for diameter in args.diameters:
        single, many = simulate(args.workdir, diameter, args.size, args.distinct, args.micrographs)
        mic = single / "mic_000.mrc"
        if "stages" in args.sections:
            record([{"kind": "stages", "diameter": diameter, **stages(model, mic, diameter, args.device)}])
        if "forward" in args.sections:
            record(forward(model, mic, diameter, args.device))
        if "memory" in args.sections and args.device.startswith("cuda") and diameter == args.diameters[0]:
            record(memory(model, diameter, args.device))
        if "steady" in args.sections:
            record(steady(model, many, diameter, args.device, args.workdir))
        if "startup" in args.sections and args.device.startswith("cuda"):
            record([startup(model, mic, diameter)])
        if "command" in args.sections:
            record(command(model, single, many, diameter, args.device, args.workdir, args.micrographs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
