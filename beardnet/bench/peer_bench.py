"""The peer: the plain loop a user would write instead of the Ray job, on the same photos.

:func:`make_photos` writes ``n`` photos to a local folder: synthetic scenes as JPEG, and every
tenth one EXIF-rotated (orientation 6), grey or PNG, so the codec's slower paths are in the mix.
:func:`run_peer` runs a ``ProcessPoolExecutor`` with one process per core, each doing read,
decode, locate, network, paste back, encode and write with the job's own components
(``beardnet.infer.transform.transform_image``, the shipped model, the job's options), and
reports photos/s from start-up (pool creation to the last write, model loads included) and in
steady state (after the first tenth of the photos), and CPU seconds per photo (this process
and its workers, ``resource.getrusage``). :func:`run_transform_folder` runs ``beardnet
transform`` on the same folder (``file://`` input and output) for ``transform_vs_peer``;
:func:`run` does both in rounds, back to back, and reports the medians.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from beardnet.bench.cpu_by_process import CpuMonitor

_STATE: dict[str, Any] = {}


def make_photos(folder: str | os.PathLike[str], n: int, seed: int = 1000) -> list[Path]:
    """Write ``n`` photos into ``folder``; returns their paths (sorted by name)."""
    from PIL import Image

    from beardnet.bench.transform_bench import _scene

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img, _ = _scene(seed + i)
        pil = Image.fromarray(img)
        kind = i % 10
        buf = io.BytesIO()
        if kind == 3:  # EXIF-rotated: stored sideways, orientation 6 turns it upright
            exif = Image.Exif()
            exif[0x0112] = 6
            pil.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=90, exif=exif)
            name = f"{i:05d}.jpg"
        elif kind == 6:
            pil.convert("L").save(buf, "JPEG", quality=90)
            name = f"{i:05d}.jpg"
        elif kind == 9:
            pil.save(buf, "PNG")
            name = f"{i:05d}.png"
        else:
            pil.save(buf, "JPEG", quality=90)
            name = f"{i:05d}.jpg"
        p = out / name
        p.write_bytes(buf.getvalue())
        paths.append(p)
    return sorted(paths)


def _init(model_uri: str | None, opts: dict[str, Any], threads: int) -> None:
    import torch

    from beardnet.faces import get_locator
    from beardnet.infer.transform import TransformOptions
    from beardnet.model import load

    torch.set_num_threads(threads)
    o = TransformOptions(**opts)
    _STATE["model"] = load(model_uri)
    _STATE["opts"] = o
    _STATE["locator"] = get_locator(o.faces, min_face_px=o.min_face_px)


def _one(src: str, dst: str) -> tuple[str, float, dict[str, float]]:
    from beardnet.infer.codec import BadImage
    from beardnet.infer.transform import transform_image

    data = Path(src).read_bytes()
    cost: dict[str, float] = {}
    try:
        out, info = transform_image(data, Path(src).name, _STATE["model"], _STATE["opts"],
                                    locator=_STATE["locator"])
        status = str(info["status"])
        cost = {**info["cpu_s"], "faces_wall": float(info.get("faces_s") or 0.0),
                "wall": sum(float(v) for v in info["timings"].values())}
    except BadImage as e:  # recorded, never a crash
        out, status = data, f"error:{e.reason}"
    Path(dst).write_bytes(out)
    return status, time.perf_counter(), cost


def run_peer(
    paths: list[Path],
    out_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    model_uri: str | None = None,
    opts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The plain loop over ``paths`` into ``out_dir`` (see the module docstring)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or len(os.sched_getaffinity(0))
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    rc0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done: list[float] = []
    statuses: dict[str, int] = {}
    # spawn, as a user's script would start clean: forking this process (a Ray driver with
    # gRPC threads by the time the bench gets here) killed pool workers (BrokenProcessPool)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                             initargs=(model_uri, dict(opts or {}), 1)) as ex:
        futs = [ex.submit(_one, str(p), str(out / p.name)) for p in paths]
        costs: list[dict[str, float]] = []
        for f in as_completed(futs):
            status, t, cost = f.result()
            statuses[status] = statuses.get(status, 0) + 1
            done.append(t)
            costs.append(cost)
    t_end = time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    rc1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(b, k) - getattr(a, k) for a, b in ((ru0, ru1), (rc0, rc1))
              for k in ("ru_utime", "ru_stime"))
    n = len(paths)
    steady = steady_rate(done)
    return {
        "photos": n,
        "workers": workers,
        "wall_s": t_end - t0,
        "ips_with_startup": n / (t_end - t0) if t_end > t0 else None,
        "ips_steady": steady,
        "cpu_s_per_photo": cpu / n if n else None,
        # CPU of the photo's work in the workers (all their threads), by part, per photo
        "cpu_ms_but_network": _mean_ms(costs, ("prepare", "apply")),
        "cpu_ms_network": _mean_ms(costs, ("network",)),
        "faces_share": (sum(c.get("faces_wall", 0.0) for c in costs)
                        / max(1e-9, sum(c.get("wall", 0.0) for c in costs))),
        "status": statuses,
        "first_done_s": min(done) - t0 if done else None,
        "load": os.getloadavg()[0],
    }


def steady_rate(done: list[float]) -> float | None:
    """Photos per second after the first tenth: the photos after it over the time from the
    first tenth's last completion to the last one (``done``: completion times, any order)."""
    t = sorted(done)
    n, k = len(t), max(1, len(done) // 10)
    return (n - k) / (t[-1] - t[k - 1]) if n > k and t[-1] > t[k - 1] else None


def _mean_ms(costs: list[dict[str, float]], parts: tuple[str, ...]) -> float | None:
    rows = [sum(c[p] for p in parts) for c in costs if all(p in c for p in parts)]
    return 1000.0 * sum(rows) / len(rows) if rows else None


def run_transform_folder(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``beardnet transform`` (the Ray job, Ray already initialised) from ``file://in_dir`` to
    ``file://out_dir``: photos/s with start-up (call to return) and the job's own rate, CPU s
    per photo (this process and its waited-for children; Ray workers are not children here, so
    the job's summed stage seconds per photo are given too)."""
    from beardnet.infer.config import TransformConfig
    from beardnet.infer.job import run_transform

    cfg_dict: dict[str, Any] = {
        "job": {"input": Path(in_dir).resolve().as_uri(),
                "output": Path(out_dir).resolve().as_uri(), "style": "full_beard"},
        "ray": {"progress": "off"},
    }
    for section, values in (overrides or {}).items():
        cfg_dict.setdefault(section, {}).update(values)
    cfg = TransformConfig.model_validate(cfg_dict)
    t0 = time.perf_counter()
    with CpuMonitor() as cpu:
        summary = run_transform(cfg, None)
    wall = time.perf_counter() - t0
    images = int(summary.get("images") or 0)
    stage = {k: float(v) for k, v in (summary.get("stage_s") or {}).items()}
    # steady state as for the peer: photos after the first tenth over the time from the first
    # tenth's last write to the last write (output files' mtimes; the job's metadata excluded)
    steady = steady_rate([p.stat().st_mtime for p in Path(out_dir).iterdir() if p.is_file()])
    return {
        "photos": images,
        "wall_s": wall,
        "ips_with_startup": images / wall if wall > 0 else None,
        "ips_steady": steady,
        "stage_s_per_photo": sum(stage.values()) / images if images else None,
        # CPU of this process and all it started (Ray's daemons, workers, sandbox children)
        "cpu_by_process": cpu.summary(images),
        "stage_share": summary.get("stage_share"),
        "sizing": summary.get("sizing"),
        "status": summary.get("status"),
        "load": os.getloadavg()[0],
    }


def run(report: Any, folder: str | os.PathLike[str], *, n: int, seed: int = 1000,
        transform: bool = True, overrides: dict[str, dict[str, Any]] | None = None,
        rounds: int = 1) -> dict:
    """Write ``n`` photos under ``folder``, then ``rounds`` times the peer and (when
    ``transform``; Ray must be up) the transform job, back to back so each pair sees the same
    load; add the figures to ``report`` (each ratio: the median of the rounds' ratios)."""
    import statistics

    from beardnet.bench.report import ratio

    base = Path(folder)
    shutil.rmtree(base / "in", ignore_errors=True)
    paths = make_photos(base / "in", n, seed)
    peers: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    for _ in range(rounds):
        for sub in ("out-peer", "out-transform"):  # a fresh run: no outputs, default sizing
            shutil.rmtree(base / sub, ignore_errors=True)
        peers.append(run_peer(paths, base / "out-peer"))
        if transform:
            try:
                jobs.append(run_transform_folder(base / "in", base / "out-transform", overrides))
            except Exception as exc:  # noqa: BLE001 - the peer's figures still count
                report.errors["transform on file://"] = f"{type(exc).__name__}: {exc}"
                transform = False

    def med(runs: list[dict[str, Any]], key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def each(runs: list[dict[str, Any]], key: str) -> str:
        return ", ".join("n/a" if r.get(key) is None else f"{r[key]:.1f}" for r in runs)

    loads = ", ".join(f"{p['load']:.1f}" for p in peers)
    report.add("peer_ips_with_startup", med(peers, "ips_with_startup"), "images/s",
               note=f"{n} photos, {peers[0]['workers']} processes; median of {rounds} "
               f"round(s): {each(peers, 'ips_with_startup')}; load after each {loads}")
    report.add("peer_ips_steady", med(peers, "ips_steady"), "images/s",
               note=f"rounds {each(peers, 'ips_steady')}")
    report.add("peer_cpu_s_per_photo", med(peers, "cpu_s_per_photo"), "s",
               note="process to exit: pool start-up and model loads included")
    report.add("cpu_ms_per_photo_but_network", med(peers, "cpu_ms_but_network"), "ms",
               note="decode, locate, align, paste back (hair drawing), encode: CPU of the "
               "photo's work in the peer's workers, all threads, mean over the photos")
    report.add("cpu_ms_per_photo_network", med(peers, "cpu_ms_network"), "ms")
    report.add("faces_share_of_photo", med(peers, "faces_share"),
               note="face location's share of a photo's stage seconds (peer)")
    out: dict[str, Any] = {"peer_rounds": peers, "transform_rounds": jobs}
    if jobs:
        job = jobs[-1]
        pairs = list(zip(peers, jobs))

        def ratios(key: str) -> list[float]:
            return [r for r in (ratio(j[key], p[key]) for p, j in pairs) if r is not None]

        def med_ratio(key: str) -> tuple[float | None, str]:
            rs = ratios(key)
            return (statistics.median(rs) if rs else None), ", ".join(f"{r:.2f}" for r in rs)

        report.add("transform_file_ips_with_startup", med(jobs, "ips_with_startup"), "images/s",
                   note=f"rounds {each(jobs, 'ips_with_startup')} (the first round starts "
                   "Ray Data's helper actors and the workers' sandbox children)")
        report.add("transform_file_ips_steady", med(jobs, "ips_steady"), "images/s",
                   note=f"rounds {each(jobs, 'ips_steady')}; network actor sizing "
                   f"{job['sizing']}")
        report.add("transform_stage_s_per_photo", med(jobs, "stage_s_per_photo"), "s",
                   note="summed stage seconds per photo (Ray workers' CPU not counted "
                   "by getrusage)")
        cpu_ms = [j["cpu_by_process"]["total_ms"] for j in jobs]
        top = ", ".join(f"{r} {v:.0f}" for r, v in
                        list(job["cpu_by_process"]["by_role_ms"].items())[:8])
        report.add("transform_cpu_s_per_photo", statistics.median(cpu_ms) / 1000.0, "s",
                   note="process to exit: the driver and every process it started (Ray's "
                   f"daemons, workers, sandbox children), from /proc; rounds "
                   f"{', '.join(f'{v:.0f}' for v in cpu_ms)} ms; last round by role, ms per "
                   f"photo: {top}")
        value, note = med_ratio("ips_with_startup")
        report.add("transform_vs_peer_with_startup", value,
                   note=f"median of the rounds' ratios ({note})")
        value, note = med_ratio("ips_steady")
        report.add("transform_vs_peer", value,
                   note=f"steady state; median of the rounds' ratios ({note})")
    report.details["peer"] = out
    return out
