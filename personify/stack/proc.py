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
