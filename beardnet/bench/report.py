"""Benchmark report: metrics, targets, machine description, JSON and a Markdown table."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

#: The issue's targets: metric -> (comparison, threshold). Ratios are from one run.
TARGETS: dict[str, tuple[str, float]] = {
    "transform_vs_raw": (">=", 0.35),
    "transform_vs_peer": (">=", 0.9),
    "cpu_ms_per_photo_but_network": ("<=", 60.0),
    "faces_share_of_photo": ("<=", 0.25),
    "locator_hit_rate": (">=", 0.98),
    "false_faces_per_100_photos": ("<=", 1.0),
    "locate_24mp_cpu_s": ("<=", 0.5),
    "train1_vs_plain": (">=", 0.95),
    "train2_vs_train1": (">=", 1.0),
    "sampler_10m_s": ("<", 2.0),
    "sampler_10m_peak_mb": ("<", 500.0),
    "actor_peak_rss_mb": ("<", 1536.0),
}

#: Metrics that the JSON must always hold (None when a part failed or was skipped).
REQUIRED: tuple[str, ...] = tuple(TARGETS)

_OPS = {
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None:
        return None
    if denominator == 0:
        return None
    return float(numerator) / float(denominator)


def meets(value: float | None, target: tuple[str, float] | None) -> bool | None:
    """Whether ``value`` meets ``target`` (None when there is no value or no target)."""
    if value is None or target is None:
        return None
    op, threshold = target
    if op not in _OPS:
        raise ValueError(f"unknown comparison {op!r}; use one of {sorted(_OPS)}")
    return bool(_OPS[op](float(value), float(threshold)))


@dataclass
class Metric:
    """One measured figure, with its unit, optional target and a short note."""

    name: str
    value: float | None
    unit: str = ""
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        return meets(self.value, self.target)

    def target_text(self) -> str:
        if self.target is None:
            return ""
        op, t = self.target
        return f"{op} {t:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "target": self.target_text() or None,
            "met": self.met,
            "note": self.note,
        }


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory, load and library versions of the machine the bench ran on."""
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["cpus_usable"] = os.cpu_count()
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu_model"] = model or "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_total_gb"] = round(int(line.split()[1]) / 1024**2, 1)
                    break
    except OSError:
        pass
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for mod in ("torch", "ray", "numpy", "mediapipe"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001 - a missing library is only reported
            info[mod] = None
    return info


def cpu_probe_ms(repeats: int = 7) -> float:
    """Milliseconds of a fixed single-thread workload (a 3x3 convolution, 32 -> 32 channels on
    128 x 128, the network's kind of work), best of ``repeats``: the host's speed, so that bench
    files from different hosts of one VM type can be told apart (absolute figures then differ
    while ratios stay comparable)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 32, 128, 128, generator=g)
        w = torch.randn(32, 32, 3, 3, generator=g)
        best = float("inf")
        with torch.inference_mode():
            for _ in range(repeats + 1):  # the first call warms up
                t0 = time.perf_counter()
                for _ in range(4):
                    torch.nn.functional.conv2d(x, w, padding=1)
                best = min(best, (time.perf_counter() - t0) / 4)
        return 1000.0 * best
    finally:
        torch.set_num_threads(old)


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    a = abs(v)
    if a == 0:
        s = "0"
    elif a >= 1000:
        s = f"{v:,.0f}"
    elif a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    elif a >= 0.01:
        s = f"{v:.2f}"
    else:
        s = f"{v:.2g}"
    return f"{s} {unit}".strip() if unit else s


@dataclass
class Report:
    """Collects metrics and details of one benchmark run; writes JSON and Markdown."""

    mode: str = "full"
    metrics: dict[str, Metric] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    part_seconds: dict[str, float] = field(default_factory=dict)
    #: 1-minute load average at the start and end of each part (the machine is shared)
    part_load: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine_info)
    started: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )

    def add(
        self, name: str, value: float | None, unit: str = "", note: str = ""
    ) -> Metric:
        """Record ``name`` (its target, if any, comes from :data:`TARGETS`)."""
        m = Metric(
            name,
            None if value is None else float(value),
            unit,
            TARGETS.get(name),
            note,
        )
        self.metrics[name] = m
        return m

    def add_all(self, values: Mapping[str, tuple[float | None, str] | float | None]) -> None:
        """Record many metrics: ``{name: value}`` or ``{name: (value, unit)}``."""
        for k, v in values.items():
            if isinstance(v, tuple):
                self.add(k, v[0], v[1])
            else:
                self.add(k, v)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "started": self.started,
            "machine": self.machine,
        }
        # Flat ratios first, so monitors can read report["transform_vs_raw"] directly.
        for name in REQUIRED:
            m = self.metrics.get(name)
            out[name] = None if m is None else m.value
        out["metrics"] = {k: m.to_dict() for k, m in self.metrics.items()}
        for name in REQUIRED:
            if name not in self.metrics:
                out["metrics"][name] = Metric(name, None, target=TARGETS[name]).to_dict()
        out["targets_met"] = {
            k: out["metrics"][k]["met"] for k in REQUIRED
        }
        out["part_seconds"] = {k: round(v, 2) for k, v in self.part_seconds.items()}
        out["part_load"] = {k: list(v) for k, v in self.part_load.items()}
        out["errors"] = dict(self.errors)
        out["details"] = self.details
        return out

    def to_markdown(self) -> str:
        """A Markdown table: metric, value, target, met?; then the machine and any errors."""
        m = self.machine
        lines = [
            f"### beardnet bench ({self.mode}), {self.started}",
            "",
            (
                f"Machine: {m.get('cpus_usable')} usable cores of {m.get('cpu_count')} "
                f"({m.get('cpu_model')}), {m.get('mem_total_gb', '?')} GB RAM, "
                f"load {m.get('loadavg_1m', '?')} at start; torch {m.get('torch')}, "
                f"ray {m.get('ray')}."
                + (f" CPU probe (one 3x3 conv, 32 ch, 128 px, 1 thread): "
                   f"{m['cpu_probe_ms']:.2f} ms at the start"
                   + (f", {m['cpu_probe_end_ms']:.2f} ms at the end"
                      if m.get("cpu_probe_end_ms") else "") + "."
                   if m.get("cpu_probe_ms") else "")
            ),
            "",
            "| metric | value | target | met? |",
            "|---|---|---|---|",
        ]
        names = list(REQUIRED) + [k for k in self.metrics if k not in REQUIRED]
        for name in names:
            metric = self.metrics.get(name) or Metric(name, None, target=TARGETS.get(name))
            met = metric.met
            met_s = "" if metric.target is None else ("n/a" if met is None else
                                                       ("yes" if met else "**no**"))
            lines.append(
                f"| `{name}` | {_fmt(metric.value, metric.unit)} | {metric.target_text()} "
                f"| {met_s} |"
            )
        notes = [(k, mm.note) for k, mm in self.metrics.items() if mm.note]
        if notes:
            lines += ["", "Notes:"]
            lines += [f"- `{k}`: {n}" for k, n in notes]
        if self.part_seconds:
            parts = []
            for k, v in self.part_seconds.items():
                load = self.part_load.get(k)
                extra = f" (load {load[0]} -> {load[1]})" if load and load[0] is not None else ""
                parts.append(f"{k} {v:.0f} s{extra}")
            lines += ["", "Part wall times (1-minute load average): " + ", ".join(parts) + "."]
        sweep = self.details.get("locator_tile_sweep")
        if sweep:
            lines += [
                "",
                "Face locator: settings vs cost and hits (faces >= 48 px):",
                "",
                "| setting | detector calls/photo | CPU ms/photo | hit rate |",
                "|---|---|---|---|",
            ]
            for row in sweep:
                hr = row.get("hit_rate")
                lines.append(
                    f"| {row.get('tile_px') or 'whole image'} | "
                    f"{row['windows_per_image']:.1f} | {row['cpu_ms_per_image']:.0f} | "
                    f"{'n/a' if hr is None else f'{hr:.2f}'} |"
                )
        if self.errors:
            lines += ["", "Errors:"]
            lines += [f"- {k}: {v}" for k, v in self.errors.items()]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | os.PathLike[str], stem: str | None = None) -> tuple[Path, Path]:
        """Write ``<out_dir>/<stem>.json`` and ``.md``; stem defaults to ``<date>-<host>``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if stem is None:
            stem = default_stem(self.mode, self.machine.get("host"))
        jp, mp = out / f"{stem}.json", out / f"{stem}.md"
        jp.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n")
        mp.write_text(self.to_markdown())
        return jp, mp


def default_stem(mode: str = "full", host: str | None = None, day: _dt.date | None = None) -> str:
    """``<date>-<host>`` (plus ``-quick`` for the quick mode), safe as a file name."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "_", host or socket.gethostname()) or "host"
    day = day or _dt.date.today()
    stem = f"{day.isoformat()}-{host}"
    return stem + ("-quick" if mode == "quick" else "")


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    return str(o)


class Timer:
    """``with Timer() as t: ...``; ``t.s`` is the elapsed wall time in seconds."""

    def __enter__(self) -> Self:
        self.t0 = time.perf_counter()
        self.s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0
