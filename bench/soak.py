"""Soak benchmark of streaming picking: N simulated micrographs arrive in chunks while Scipion's
pick protocol runs (one engine run per batch); one batch's engine run is SIGKILLed and the protocol
is continued as Scipion's "Continue" does. Measures micrographs per minute (one worker: the
protocol runs one batch at a time), the protocol process's memory over the run (flat or growing),
the engine runs' peak memory, and checks that every micrograph was picked exactly once.

    python bench/soak.py [--micrographs 2000] [--chunk 100] [--interval 10] [--batch 50]
                         [--size 256] [--output bench/results/soak]

Runs in a throw-away Scipion user folder under --output; needs the ``test`` extra (Scipion).
Prints one line; record the figures in bench/results/scale-out.json, with the command.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process (MiB), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def processes_matching(text: str) -> list[int]:
    """PIDs whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if text.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


class MemorySampler(threading.Thread):
    """Samples, every ``period`` s, the RSS of the pick protocol's process (found by its run
    folder) and the largest engine (``cryounet pick``) process."""

    def __init__(self, run_marker: str, period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.run_marker, self.period = run_marker, period
        self.protocol: list[tuple[float, float]] = []
        self.engine_peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            protocol = set(processes_matching("pw_protocol_run")) & set(processes_matching(self.run_marker))
            if protocol:
                self.protocol.append((time.monotonic() - t0, max(rss_mib(p) for p in protocol)))
            for pid in processes_matching("cryounet\0pick"):
                self.engine_peak = max(self.engine_peak, rss_mib(pid))
            self.stop.wait(self.period)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=100, help="micrographs arriving at once")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between chunks")
    parser.add_argument("--batch", type=int, default=50, help="the protocol's streaming batch size")
    parser.add_argument("--size", type=int, default=256, help="micrograph side (px)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "soak")
    args = parser.parse_args()
    out = args.output.resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "user").mkdir(parents=True)
    os.environ.update(SCIPION_USER_DATA=str(out / "user"), SCIPION_DOMAIN="pwem", SCIPION_NOTES_HEADING="",
                      SCIPION_HOSTS=str(out / "hosts.conf"), SCIPION_PYTHON=sys.executable,
                      PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    (out / "hosts.conf").write_text("[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s\n"
                                    "NAME = SCIPION_SOAK\nMANDATORY = False\nSUBMIT_COMMAND = \n"
                                    "CANCEL_COMMAND = \nCHECK_COMMAND = \nSUBMIT_TEMPLATE = \nQUEUES = {}\n")

    from pwem.protocols import ProtImportMicrographs
    from pyworkflow.object import Pointer
    from pyworkflow.project import Manager
    from pyworkflow.protocol.constants import MODE_RESUME

    from cryounet_plugin import engine
    from cryounet_plugin.protocols import CryoUnetProtImportModel, CryoUnetProtPick
    from cryounet_plugin.tests.common import SIM_PIXEL, simulate, trainModelWithCli, writeKillOnceWrapper

    t_setup = time.monotonic()
    source = simulate(str(out / "source"), micrographs=args.micrographs, size=args.size, seed=7)
    training = simulate(str(out / "training"), micrographs=6, size=args.size, seed=8)
    model = trainModelWithCli(training, training, str(out / "model"))
    stems = sorted(p.stem for p in Path(source).glob("*.mrc"))
    print(f"soak: {len(stems)} micrographs simulated and a model trained in "
          f"{time.monotonic() - t_setup:.0f} s", flush=True)

    project = Manager().createProject("soak")
    os.chdir(project.getPath())  # pyworkflow's run paths are relative to the project folder
    watched = out / "arriving"
    watched.mkdir()

    def arrive(names) -> None:
        for name in names:  # copy under a hidden name, then rename: never a half-written file
            shutil.copy(Path(source) / f"{name}.mrc", watched / f".{name}.mrc")
            os.replace(watched / f".{name}.mrc", watched / f"{name}.mrc")

    arrive(stems[:args.chunk])
    importer = project.newProtocol(ProtImportMicrographs, filesPath=str(watched), filesPattern="mic_*.mrc",
                                   samplingRate=SIM_PIXEL, voltage=300, sphericalAberration=2.7,
                                   dataStreaming=True, timeout="10h", fileTimeout="1")
    project.launchProtocol(importer, wait=False)
    imported = project.newProtocol(CryoUnetProtImportModel, modelFolder=model)
    project.launchProtocol(imported, wait=True)
    while not importer.hasAttribute("outputMicrographs"):
        time.sleep(1)
        project._updateProtocol(importer)

    kill_stem = stems[len(stems) // 2]
    flag = out / "kill-once"
    flag.touch()
    os.environ.update(CRYOUNET_PYTHON=writeKillOnceWrapper(str(out / "kill_once.sh")), REAL_PYTHON=sys.executable,
                      KILL_FLAG=str(flag), KILL_STEM=kill_stem)
    pick = project.newProtocol(CryoUnetProtPick, useGpu=False, tta=False, streamingBatchSize=args.batch,
                               streamingSleepOnWait=0, numberOfThreads=1)
    pick.inputMicrographs.set(importer)
    pick.inputMicrographs.setExtended("outputMicrographs")
    pick.inputModels.append(Pointer(imported, extended="outputModel"))
    t0 = time.monotonic()
    project.launchProtocol(pick, wait=False)
    sampler = MemorySampler(os.path.basename(pick.getWorkingDir()))
    sampler.start()

    sent, resubmitted, next_chunk = args.chunk, False, time.monotonic() + args.interval
    while True:
        now = time.monotonic()
        if sent < len(stems) and now >= next_chunk:
            arrive(stems[sent:sent + args.chunk])
            sent += args.chunk
            next_chunk = now + args.interval
            if sent >= len(stems):
                Path(importer._getStopStreamingFilename()).touch()  # "Stop import"
        project._updateProtocol(pick)
        if pick.isFailed() and not resubmitted:
            if flag.exists():
                raise SystemExit(f"soak: the pick run failed on its own: {pick.getErrorMessage()}")
            print(f"soak: the engine run of the batch with {kill_stem} was killed "
                  f"({time.monotonic() - t0:.0f} s); continuing the protocol", flush=True)
            pick.runMode.set(MODE_RESUME)
            project.launchProtocol(pick, wait=False)
            resubmitted = True
        elif not pick.isActive() and not pick.isFailed() and pick.isFinished():
            break
        elif pick.isFailed():
            raise SystemExit(f"soak: the pick run failed again: {pick.getErrorMessage()}")
        time.sleep(1)
    wall = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()

    records = pick._allRecords()
    counts = collections.Counter(c.getMicId() for c in pick.outputCoordinates.iterItems())
    ids = [r["micId"] for r in records]
    expected = {r["micId"]: len(engine.readCoordinates(r["coordinates"])) for r in records if r.get("coordinates")}
    lost = len(stems) - len(set(ids))
    repeated = sum(1 for mic, n in counts.items() if n != expected.get(mic, 0)) + len(ids) - len(set(ids))
    batches = [s for s in pick.loadSteps() if s.funcName.get() == "pickMicrographListStep"]
    memory = [m for _, m in sampler.protocol]
    third = max(1, len(memory) // 3)
    row = {"micrographs": len(stems), "batches": len(batches), "wall_seconds": wall,
           "micrographs_per_minute": len(stems) / wall * 60, "lost": lost, "repeated": repeated,
           "killed_and_resubmitted": resubmitted, "protocol_rss_first_third_mib": max(memory[:third]),
           "protocol_rss_last_third_mib": max(memory[-third:]), "protocol_rss_max_mib": max(memory),
           "engine_peak_rss_mib": sampler.engine_peak, "size_px": args.size, "batch": args.batch,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)"}
    (out / "results.json").write_text(json.dumps({**row, "protocol_rss_samples": sampler.protocol}, indent=1))
    print(f"soak: {len(stems)} micrographs ({args.size} px) in {len(batches)} batches of {args.batch}, "
          f"{wall / 60:.1f} min, {row['micrographs_per_minute']:.0f} micrographs/min on 1 worker; "
          f"lost {lost}, repeated {repeated}, killed batch resubmitted: {resubmitted}; protocol RSS "
          f"max {row['protocol_rss_first_third_mib']:.0f} MiB (first third) / "
          f"{row['protocol_rss_last_third_mib']:.0f} MiB (last third); engine peak "
          f"{sampler.engine_peak:.0f} MiB", flush=True)
    return 0 if lost == 0 and repeated == 0 and resubmitted else 1


if __name__ == "__main__":
    sys.exit(main())
