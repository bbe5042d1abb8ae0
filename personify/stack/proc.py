"""What the kernel says about a process, read from /proc: its state and what it has cost."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds (user + system) the process has used so far, and its peak resident memory."""

    cpu_s: float
    peak_rss_bytes: int


def stat_fields(stat: str) -> list[str]:
    """The fields of a `/proc/<pid>/stat` line from the third (the state) on.

    The command name, field two, may hold spaces and parentheses, so fields are split after its
    last closing parenthesis."""
    return stat[stat.rindex(")") + 1:].split()


def parse_usage(stat: str, status: str, clock_ticks: int) -> Usage:
    """`stat` fields utime and stime (14 and 15, in clock ticks), `status` VmHWM (kB)."""
    fields = stat_fields(stat)
    utime, stime = int(fields[11]), int(fields[12])
    peak_kb = next((int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("VmHWM:")), 0)
    return Usage((utime + stime) / clock_ticks, peak_kb * 1024)


def usage_of(pid: int) -> Usage:
    proc = Path(f"/proc/{pid}")
    return parse_usage((proc / "stat").read_text(), (proc / "status").read_text(),
                       os.sysconf("SC_CLK_TCK"))


def is_zombie(stat: str) -> bool:
    return stat_fields(stat)[0] == "Z"


def run_queue_wait_s(pid: int) -> float:
    """Seconds the process's threads have spent runnable but waiting for a CPU (the second
    field of each `/proc/<pid>/task/<tid>/schedstat`, in ns): the share of a latency that is
    the machine's other work, not the process's own."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return total / 1e9


def cpu_pressure_s() -> float | None:
    """Machine-wide seconds in which some task waited for a CPU (`/proc/pressure/cpu`, PSI);
    None on kernels without it."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None
    return int(line.rsplit("total=", 1)[1]) / 1e6
