"""CPU and resident memory of the processes under test, read with psutil."""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024
# Above this, processes outside the bench took enough CPU to distort the figure.
FOREIGN_LOAD_CORES = 0.25


def _rss(process: psutil.Process) -> int | None:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return None


def _with_workers(process: psutil.Process) -> list[psutil.Process]:
    """The process and its children: a service run with PRODUCER_/CONSUMER_WORKERS > 1 is a
    supervisor whose workers do the work."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def _cpu_by_pid() -> dict[int, tuple[str, float]]:
    """Label and CPU seconds of every user-space process. Kernel threads have no command line;
    their work (disk, network) is partly ours, and shows as unattributed."""
    found = {}
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        cmdline = process.info["cmdline"]
        times = process.info["cpu_times"]
        if cmdline and times is not None:
            label = f"{' '.join(cmdline[:3])[:60]} [{process.pid}]"
            found[process.pid] = (label, float(times.user + times.system))
    return found


def _machine_busy_and_total() -> tuple[float, float]:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = float(sum(times))
    return total - idle, total


@dataclass(frozen=True, slots=True)
class CpuUsage:
    cores: dict[str, float]
    machine_busy: float  # fraction of all CPUs, 0-1
    logical_cpus: int
    other: float = 0.0  # cores of user-space processes outside the bench (a shared machine)
    top_other: dict[str, float] = field(default_factory=dict)  # the heaviest of them
    kernel: float = 0.0  # busy time no live process accounts for (softirq, exited processes)
    wall_s: float = 0.0  # the window: cores × wall_s = CPU seconds
    # Each group's busiest single process (a supervisor's worker, one of the client processes):
    # a bottleneck is one process near a full core, not a group's sum.
    busiest: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{name} {cores:.2f}" for name, cores in self.cores.items() if cores >= 0.005]
        heaviest = ", ".join(f"{name} {cores:.2f}" for name, cores in self.top_other.items())
        return (
            f"CPU cores: {', '.join(parts)}, unattributed {self.kernel:.2f}, "
            f"other processes {self.other:.2f}{f' ({heaviest})' if heaviest else ''}; "
            f"machine {self.machine_busy:.0%} busy"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "cores": {k: round(v, 3) for k, v in self.cores.items()},
            "unattributed": round(self.kernel, 3),
            "other_processes": round(self.other, 3),
            "heaviest_other_processes": self.top_other,
            "machine_busy": round(self.machine_busy, 3),
            "logical_cpus": self.logical_cpus,
            "wall_s": round(self.wall_s, 3),
            "busiest_process": {k: round(v, 3) for k, v in self.busiest.items()},
        }


class CpuMeter:
    """CPU used by named processes between `start()` and `stop()`, in cores (1.0 = one core),
    and by every other process on the machine."""

    def __init__(self, pids: Mapping[str, Sequence[int]]) -> None:
        # The bench's own process is always counted, so "other" is truly foreign load.
        groups = {**pids, "bench": [os.getpid()]}
        self._processes = {
            name: [psutil.Process(pid) for pid in group if psutil.pid_exists(pid)]
            for name, group in groups.items()
        }
        self._begin: dict[int, tuple[str, float]] = {}
        self._machine = (0.0, 0.0)
        self._started_at = 0.0

    def _members(self) -> dict[str, set[int]]:
        """Each group's pids, with its workers; the bench's own children are the services and
        clients, counted under their names."""
        return {
            name: {m.pid for p in group for m in ([p] if name == "bench" else _with_workers(p))}
            for name, group in self._processes.items()
        }

    def start(self) -> None:
        self._begin = _cpu_by_pid()
        self._machine = _machine_busy_and_total()
        self._started_at = time.monotonic()

    def stop(self) -> CpuUsage:
        wall = max(time.monotonic() - self._started_at, 1e-9)
        end = _cpu_by_pid()
        busy, total = _machine_busy_and_total()
        machine = (busy - self._machine[0]) / max(total - self._machine[1], 1e-9)
        cpus = psutil.cpu_count() or 1
        # A process born during the window counts in full; one that died in it is missed.
        used = {pid: (end[pid][1] - self._begin.get(pid, ("", 0.0))[1]) / wall for pid in end}
        members = self._members()
        cores = {name: sum(used.get(pid, 0.0) for pid in pids) for name, pids in members.items()}
        ours = set().union(*members.values())
        foreign = sorted(
            ((u, end[pid][0]) for pid, u in used.items() if pid not in ours), reverse=True
        )
        other = sum(u for u, _ in foreign)
        return CpuUsage(
            cores=cores,
            machine_busy=machine,
            logical_cpus=cpus,
            other=other,
            top_other={label: round(u, 2) for u, label in foreign[:3] if u >= 0.05},
            kernel=max(machine * cpus - sum(cores.values()) - other, 0.0),
            wall_s=wall,
            busiest={
                name: max((used.get(pid, 0.0) for pid in pids), default=0.0)
                for name, pids in members.items()
            },
        )


def cpu_ms_per_item(usage: CpuUsage | None, name: str, rate: float | None) -> float | None:
    """Milliseconds of `name`'s CPU per item processed at `rate` items/s."""
    if usage is None or not rate or name not in usage.cores:
        return None
    return usage.cores[name] / rate * 1000


def saturation(usage: CpuUsage, client: str, server: str, client_processes: int) -> str:
    """Which side ran out of CPU: the machine, the server process, the client, or none."""
    if usage.other >= FOREIGN_LOAD_CORES:
        return f"SHARED MACHINE: other processes used {usage.other:.2f} cores"
    if usage.machine_busy >= 0.9:
        return f"machine saturated ({usage.logical_cpus} CPUs {usage.machine_busy:.0%} busy)"
    server_cores = usage.cores.get(server, 0.0)
    client_cores = usage.cores.get(client, 0.0) / max(client_processes, 1)
    if server_cores >= 0.9 and server_cores >= client_cores:
        return f"{server} saturated ({server_cores:.2f} cores)"
    if client_cores >= 0.9:
        return f"{client} saturated ({client_cores:.2f} cores per process)"
    return "no CPU saturated (latency-bound)"


def cpu_ms_per_unit(usage: CpuUsage | None, name: str, units: int | None) -> float | None:
    """Milliseconds of `name`'s CPU per unit of work, `units` done in the window (so time the
    window spent idle, e.g. settling, still counts: it is the process's cost)."""
    if usage is None or not units or name not in usage.cores or usage.wall_s <= 0:
        return None
    return usage.cores[name] * usage.wall_s / units * 1000


def bottleneck(usage: CpuUsage) -> tuple[str, float, str]:
    """The process closest to a full core (the bench's own process left out), its cores, and
    what that means: one process at ≥ 0.9 cores is the bottleneck; else a machine ≥ 90 % busy
    is, else nothing saturated (latency-bound)."""
    candidates = {name: cores for name, cores in usage.busiest.items() if name != "bench"}
    if not candidates:
        return "?", 0.0, "no process metered"
    name = max(candidates, key=candidates.__getitem__)
    cores = candidates[name]
    if cores >= 0.9:
        verdict = f"{name} saturated: one process at {cores:.2f} cores"
    elif usage.machine_busy >= 0.9:
        verdict = (
            f"machine saturated ({usage.logical_cpus} CPUs {usage.machine_busy:.0%} busy); "
            f"busiest process {name} at {cores:.2f} cores"
        )
    else:
        verdict = f"no CPU saturated (latency-bound); busiest process {name} at {cores:.2f} cores"
    return name, cores, verdict


@dataclass(frozen=True, slots=True)
class RssSample:
    at: float  # time.time()
    rss: dict[str, int]  # bytes per process name


class RssSampler:
    """Samples the RSS of named processes every `interval_s` on a daemon thread."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.5) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.samples: list[RssSample] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = {}
            for name, process in self._processes.items():
                # With worker processes, the largest one: the target is per process.
                sizes = [_rss(member) for member in _with_workers(process)]
                known = [size for size in sizes if size is not None]
                if known:
                    rss[name] = max(known)
            self.samples.append(RssSample(time.time(), rss))
            self._stop.wait(self._interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def rss_at(samples: Sequence[RssSample], name: str, at: float) -> int | None:
    """The last sample of `name` taken at or before `at` (the first one if none is earlier)."""
    points = [(s.at, s.rss[name]) for s in samples if name in s.rss]
    if not points:
        return None
    index = bisect.bisect_right([t for t, _ in points], at) - 1
    return points[max(index, 0)][1]


def rss_profile(
    samples: Sequence[RssSample], name: str, start: float, end: float
) -> dict[str, int | None]:
    """RSS at 10 %, 50 % and 100 % of the run, and its peak, in bytes."""
    span = end - start
    during = [s.rss[name] for s in samples if name in s.rss and start <= s.at <= end]
    return {
        "p10": rss_at(samples, name, start + 0.1 * span),
        "p50": rss_at(samples, name, start + 0.5 * span),
        "p100": rss_at(samples, name, end),
        "peak": max(during, default=None),
    }


def growth(middle: int | None, end: int | None) -> float | None:
    """Relative RSS growth over the second half of a run (0.05 = grew 5 %)."""
    return None if middle is None or end is None or middle <= 0 else (end - middle) / middle
