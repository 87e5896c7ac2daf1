"""Peak RSS of processes while a benchmark runs: this process, and the Ray workers (and their
sandbox children) it starts, found by their command lines in ``/proc``."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from typing import Any, Self


def status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` (or plain integer) field of ``/proc/PID/status``, or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def self_peak_rss_mb() -> float:
    """Peak RSS of this process in MB (``VmHWM``, else ``ru_maxrss``)."""
    kb = status_kb(os.getpid(), "VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0


def cmdline(pid: int) -> str:
    """The command line of ``pid`` (process title for Ray workers), or ''."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


class ProcPoller:
    """A background thread calling ``_poll`` every ``interval_s`` between enter and exit (once
    more at exit); ``_first`` runs on enter. A vanished process during a poll is fine."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        raise NotImplementedError

    def _first(self) -> None:
        """Called on enter, before the thread starts."""

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self._poll()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        self._first()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__,
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._poll()


class RssMonitor(ProcPoller):
    """Poll ``/proc`` and keep the peak RSS of every process whose command line matches one of
    ``roles`` (name -> regex; the first match gives the role). With ``ray_only`` only Ray worker
    titles (``ray::...``) are considered. A process's peak is ``VmHWM`` (the kernel's high-water
    mark, so nothing between polls is missed); its parent pid is kept too. Use as a context
    manager around the job."""

    def __init__(self, roles: dict[str, str], interval_s: float = 0.25,
                 ray_only: bool = True) -> None:
        super().__init__(interval_s)
        self.roles = {name: re.compile(rx) for name, rx in roles.items()}
        self.ray_only = ray_only
        self.role_of: dict[int, str] = {}
        self.parent: dict[int, int] = {}
        self.peak_kb: dict[int, int] = {}

    def _poll(self) -> None:
        me = os.getpid()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid == me:
                continue
            if pid not in self.role_of:
                cmd = cmdline(pid)
                if self.ray_only and not cmd.startswith("ray::"):
                    continue
                for role, rx in self.roles.items():
                    if rx.search(cmd):
                        self.role_of[pid] = role
                        self.parent[pid] = int(status_kb(pid, "PPid") or 0)
                        break
                else:
                    continue
            kb = status_kb(pid, "VmHWM")
            if kb is not None:
                self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), kb)

    def peaks_mb(self) -> dict[int, float]:
        """Peak RSS (MB) per monitored pid."""
        return {pid: kb / 1024.0 for pid, kb in self.peak_kb.items()}

    def peak_mb(self, role: str) -> float | None:
        """Largest peak RSS (MB) among processes of ``role``; None if none was seen."""
        vals = [v for pid, v in self.peaks_mb().items() if self.role_of.get(pid) == role]
        return max(vals) if vals else None

    def summary(self) -> dict[str, Any]:
        """``{role: {processes, peak_mb}}``."""
        out: dict[str, Any] = {}
        for role in self.roles:
            vals = [v for pid, v in self.peaks_mb().items() if self.role_of.get(pid) == role]
            out[role] = {"processes": len(vals), "peak_mb": max(vals) if vals else None}
        return out
