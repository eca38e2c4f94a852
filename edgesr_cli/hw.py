"""What the host computes natively, read once where device and dtype are chosen (CLI, backends, trainers)."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo); False when unknown."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping: the kernel's MemAvailable, or less where a
    cgroup (a container, a Slurm job) caps the memory; None when unknown (not Linux)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),  # cgroup v2, then v1
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = int(Path("/sys/fs/cgroup", usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            room = max(0, int(limit) - usage)
            avail = room if avail is None else min(avail, room)
        break
    return avail


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, Slurm, docker --cpuset-cpus), capped by
    a cgroup CPU quota (docker --cpus, Kubernetes limits), rounded up; at least 1."""
    import math
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup allows (quota / period), None when unlimited or unknown."""
    try:  # cgroup v2
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:  # cgroup v1
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except ValueError:
        return None


def _cpu_times() -> dict[int, tuple[int, int]] | None:
    """cpu index -> (idle + iowait jiffies, total jiffies), from /proc/stat; None when unreadable."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]
            out[int(name[3:])] = (v[3] + v[4], sum(v))
    return out


_SAMPLE_START: tuple[float, dict[int, tuple[int, int]], int | None] | None = None
_SAMPLE_MAX_AGE = 10.0  # seconds: an older start says little about the load now; idle_cpus then samples afresh


def start_idle_sample() -> None:
    """Open idle_cpus' sample now (the `edgesr` executable does at start): the work done before the thread
    count is chosen (imports, reading the photo's header) then stands in for the sample's sleep."""
    global _SAMPLE_START
    import time

    a = _cpu_times()
    _SAMPLE_START = (time.monotonic(), a, _own_ticks()) if a else None


def idle_cpus(interval: float = 0.05) -> float | None:
    """How many of this process's CPUs other processes left idle over `interval` seconds (a sum of idle
    fractions, from /proc/stat); None where unknown. A busy machine gets fewer threads than cores: a thread
    pool that splits work evenly waits for its slowest thread, and a thread sharing a core with another busy
    process runs at half speed (and spins while it waits). This process's own CPU time over the interval
    counts as idle: the worker threads of a library just imported (OpenBLAS's, OpenMP's) spin for a while
    after start, and counting them as load made the default one thread on an idle 2-core machine. Where
    start_idle_sample opened the sample less than _SAMPLE_MAX_AGE seconds ago, it runs from there and sleeps
    only what is left of `interval` (nothing, after the imports of a command)."""
    import os
    import time

    try:
        mine = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    start = _SAMPLE_START
    if start is not None and 0.0 <= time.monotonic() - start[0] <= _SAMPLE_MAX_AGE:
        began, a, own_a = start
    else:
        began, a, own_a = time.monotonic(), _cpu_times(), _own_ticks()
    if not a:
        return None
    wait = interval - (time.monotonic() - began)
    if wait > 0:
        time.sleep(wait)
    b, own_b = _cpu_times(), _own_ticks()
    if not b:
        return None
    own = own_b - own_a if own_a is not None and own_b is not None else 0
    return _idle_between(a, b, own, mine)


def _idle_between(a: dict[int, tuple[int, int]], b: dict[int, tuple[int, int]], own_ticks: int,
                  mine: set[int]) -> float:
    """Idle CPUs (a sum of fractions) among `mine` between two /proc/stat readings, giving back the
    `own_ticks` of CPU time this process used meanwhile (spread over its CPUs, capped at all idle)."""
    idle, spans = 0.0, []
    for cpu in mine:
        if cpu in a and cpu in b and b[cpu][1] > a[cpu][1]:
            span = b[cpu][1] - a[cpu][1]
            idle += (b[cpu][0] - a[cpu][0]) / span
            spans.append(span)
    if spans and own_ticks > 0:
        idle += own_ticks / (sum(spans) / len(spans))
    return min(idle, float(len(spans)))


def _own_ticks() -> int | None:
    """user + system clock ticks of this process, all threads (/proc/self/stat, the unit of /proc/stat)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def default_threads(idle_only: bool = True) -> int:
    """Threads for the CPU backends when --threads is not given: $OMP_NUM_THREADS when set (as torch and
    ONNX Runtime read it), else the usable CPUs that are idle now (rounded to the nearest, at least 1), so
    that another busy process does not make every thread wait for the one that shares its core; all the usable
    CPUs without `idle_only` (a backend whose threads run tiles apart, which wait for none: BackendSpec.streams).
    The output bytes do not depend on the count (tested)."""
    import os

    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    n = usable_cpus()
    if n == 1 or not idle_only:
        return n
    idle = idle_cpus()
    if idle is None:
        return n
    return max(1, min(n, int(idle + 0.5)))


def _count(text: str | None) -> int | None:
    """A thread count written in $OMP_NUM_THREADS (an integer >= 1), else None."""
    text = (text or "").strip()
    return int(text) if text.isdigit() and int(text) >= 1 else None


def thread_count(threads: int | None, idle_only: bool = True) -> tuple[int, list[str]]:
    """The CPU threads to run with, and one-line notes on what was changed: `threads` (--threads), else
    default_threads(idle_only), capped at the usable CPUs (more threads than cores only wait for each other, and torch's
    OpenMP pool crashed at 99999); an $OMP_NUM_THREADS that is not a count is ignored. $OMP_NUM_THREADS is
    rewritten to the count when it was not one or asked for more, before torch's OpenMP or ONNX Runtime read it
    (libgomp prints its own complaint about an invalid value when it loads)."""
    import os

    cpus = usable_cpus()
    env = os.environ.get("OMP_NUM_THREADS")
    from_env = _count(env)
    notes = []
    if env is not None and from_env is None:
        notes.append(f"OMP_NUM_THREADS={env!r} is not a thread count (an integer >= 1); ignored")
        os.environ.pop("OMP_NUM_THREADS")
    asked, source = (threads, f"--threads {threads}") if threads is not None else (from_env, f"OMP_NUM_THREADS={env}")
    if asked is None:
        n = default_threads(idle_only)
    elif asked > cpus:
        n = cpus
        notes.append(f"{source} is more than the {cpus} CPU{'s' if cpus != 1 else ''} this process may use; "
                     f"using {cpus}")
    else:
        n = int(asked)
    if from_env is not None and from_env > cpus:
        os.environ["OMP_NUM_THREADS"] = str(n)
    return n, notes


def set_threads(threads: int | None, idle_only: bool = True) -> tuple[int, list[str]]:
    """thread_count(threads, idle_only); sets torch's intra-op pool when torch is already imported (the torch backend
    sets it at load too) and returns the count, for ONNX Runtime's and LiteRT's pools, and the notes."""
    import sys

    n, notes = thread_count(threads, idle_only)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n, notes
