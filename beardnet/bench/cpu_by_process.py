"""CPU seconds of this process and every process it starts (a local Ray's daemons, its workers,
their sandbox children) while a benchmark runs, by role, from ``/proc`` (Linux).

Use :class:`CpuMonitor` as a context manager around the job. It polls ``/proc/PID/stat`` and
gives each descendant's ``utime + stime`` since the last poll to the role its title names then
(Ray retitles a worker per task); a process that exits between two polls loses at most one
interval of CPU, and the polling itself counts as the driver's (~1 % of a core). Roles come
from the process title: ``ray::_StatsActor`` -> ``_StatsActor``,
``ray::MapWorker(MapBatches(NetworkFn))`` -> ``MapWorker(...NetworkFn)``, the sandbox children
-> ``sandbox``, a Ray worker not yet titled -> ``worker start-up``, this process -> ``driver``,
else the command's name.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from beardnet.bench.rss import ProcPoller, cmdline

_TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def _stat(pid: int) -> tuple[int, float] | None:
    """``(ppid, utime + stime seconds)`` of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK
    except (OSError, ValueError, IndexError):
        return None


def role_of(cmd: str, is_self: bool = False) -> str:
    """A short role name from a process's command line (see the module docstring)."""
    if is_self:
        return "driver"
    if cmd.startswith("ray::"):
        title = cmd[5:].split()[0] if cmd[5:].strip() else "worker"
        m = re.match(r"MapWorker\(.*?(\w+Fn)\)+", title)
        return f"MapWorker(...{m.group(1)})" if m else title.split(".")[0]
    if "default_worker.py" in cmd:  # a Ray worker before its first title: importing
        return "worker start-up"
    if "beardnet.infer.sandbox" in cmd:
        return "sandbox"
    name = os.path.basename(cmd.split()[0]) if cmd else "?"
    return name


class CpuMonitor(ProcPoller):
    """CPU seconds per role of this process and its descendants between enter and exit;
    ``keep_history``: also the running totals at each poll, for :meth:`between`."""

    def __init__(self, interval_s: float = 0.25, keep_history: bool = False) -> None:
        super().__init__(interval_s)
        self.me = os.getpid()
        self.last_cpu: dict[int, float] = {}
        self.seconds: dict[str, float] = {}
        self.keep_history = keep_history
        self.history: list[tuple[float, dict[str, float]]] = []  # (time.time(), totals)

    def _descendants(self) -> dict[int, float]:
        stats: dict[int, tuple[int, float]] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = _stat(int(name))
                if st is not None:
                    stats[int(name)] = st
        mine: dict[int, float] = {}
        for pid, (_ppid, cpu) in stats.items():
            p, hops = pid, 0
            while p > 1 and p != self.me and hops < 64:
                p, hops = stats.get(p, (0, 0.0))[0], hops + 1
            if p == self.me:
                mine[pid] = cpu
        return mine

    def _poll(self, first: bool = False) -> None:
        for pid, cpu in self._descendants().items():
            if first:  # processes running at the start count from there
                self.last_cpu[pid] = cpu
                continue
            # the CPU since the last poll goes to the title the process has now (a Ray worker
            # is retitled per task), a new process's CPU counts from 0
            delta = cpu - self.last_cpu.get(pid, 0.0)
            self.last_cpu[pid] = cpu
            if delta > 0:
                role = role_of(cmdline(pid), pid == self.me)
                self.seconds[role] = self.seconds.get(role, 0.0) + delta
        if self.keep_history:
            self.history.append((time.time(), dict(self.seconds)))

    def _first(self) -> None:
        self._poll(first=True)

    def between(self, t0: float, t1: float) -> tuple[dict[str, float], float]:
        """CPU seconds per role within ``t0``..``t1`` (``time.time()``; needs ``keep_history``)
        and the seconds they cover: from the first to the last poll inside the window (at most
        two intervals less than it). ``({}, 0.0)`` when fewer than two polls fall inside."""
        inside = [(t, s) for t, s in self.history if t0 <= t <= t1]
        if len(inside) < 2:
            return {}, 0.0
        (ta, a), (tb, b) = inside[0], inside[-1]
        out = {r: b[r] - a.get(r, 0.0) for r in b if b[r] - a.get(r, 0.0) > 0}
        return dict(sorted(out.items(), key=lambda kv: -kv[1])), tb - ta

    def shares(self, t0: float, t1: float, cores: int, own_role: str) -> dict[str, Any]:
        """Shares of ``cores`` used within ``t0``..``t1`` (see :meth:`between`) by the processes
        of ``own_role`` (``trainer_cpu_share``) and by all the others (``others_cpu_share``,
        ``others_by_role`` in cores); ``{}`` when too few polls fall inside."""
        roles, covered = self.between(float(t0), float(t1))
        if covered <= 0:
            return {}
        others = {k: v for k, v in roles.items() if k != own_role}
        return {"trainer_cpu_share": roles.get(own_role, 0.0) / (covered * cores),
                "others_cpu_share": sum(others.values()) / (covered * cores),
                "others_by_role": {k: round(v / covered, 3) for k, v in others.items()}}

    def by_role(self) -> dict[str, float]:
        """CPU seconds per role, largest first."""
        return dict(sorted(self.seconds.items(), key=lambda kv: -kv[1]))

    def total_s(self) -> float:
        """CPU seconds of all of them."""
        return sum(self.by_role().values())

    def summary(self, per: int) -> dict[str, Any]:
        """``{"total_ms": ..., "by_role_ms": {...}}`` per item (``per``: e.g. photos)."""
        n = max(1, per)
        return {"total_ms": 1000.0 * self.total_s() / n,
                "by_role_ms": {r: 1000.0 * v / n for r, v in self.by_role().items()}}
