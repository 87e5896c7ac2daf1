"""Faces benchmark: decode + locate + align in one process, and the memory of transform actors.

- :func:`locate_scenes` runs the transform's own ``prepare`` (decode, face locator, aligner) on
  scene photos, one after another in this process, and returns the rates, the hit rate against
  the renderer's ground-truth boxes and the aligned crops (the "same crops" the raw network
  rate is measured on).
- :class:`RssMonitor` watches Ray worker processes (``/proc``) while the transform job runs and
  keeps each one's peak RSS (``VmHWM``) by role, so ``actor_peak_rss_mb`` is the real network
  actor of the real job.
- :func:`actor_peak_rss` is the fallback (e.g. a remote Ray): a bench-owned actor that builds
  the job's network stage and runs crop batches through it, then reads its own peak RSS.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from beardnet.bench.rss import self_peak_rss_mb


def locate_scenes(
    items: Sequence[dict[str, Any]],
    *,
    faces: str = "mediapipe",
    min_face_px: int = 48,
    crop_size: int = 128,
    style_idx: int = 4,
) -> dict[str, Any]:
    """Run ``beardnet.infer.transform.prepare`` on every item (``key``, ``data`` bytes, optional
    ``boxes`` ground truth) in this process; returns timings, hit rate and the crops."""
    from beardnet.bench.locator_bench import score_faces
    from beardnet.faces import get_locator
    from beardnet.infer.transform import TransformOptions, prepare

    opts = TransformOptions(min_face_px=min_face_px, faces=faces, crop_size=crop_size)
    locator = get_locator(faces)
    # warm the locator (graph start-up is not per-photo work)
    if items:
        prepare(items[0]["data"], items[0]["key"], opts, locator)
    decode_s = faces_s = align_s = 0.0
    n_found = 0
    gt_big = gt_hit = false_faces = scored = 0
    crops: list[np.ndarray] = []
    per_image_crops: list[int] = []
    errors = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for it in items:
        try:
            prep = prepare(it["data"], it["key"], opts, locator)
        except Exception:  # noqa: BLE001 - counted; the job reports such photos as errors
            errors += 1
            per_image_crops.append(0)
            continue
        t = prep.timings
        decode_s += t.get("decode_s", 0.0)
        faces_s += t.get("faces_s", 0.0)
        align_s += t.get("align_s", 0.0)
        n_found += prep.n_found
        if it.get("boxes") is not None:
            n_gt, n_hit, n_false = score_faces(prep.faces, it["boxes"], min_face_px)
            gt_big, gt_hit, false_faces = gt_big + n_gt, gt_hit + n_hit, false_faces + n_false
            scored += 1
        if prep.crops is not None and len(prep.crops):
            crops.append(prep.crops)
        per_image_crops.append(0 if prep.crops is None else len(prep.crops))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    n = len(items)
    all_crops = np.concatenate(crops) if crops else np.zeros((0, crop_size, crop_size, 3), np.uint8)
    return {
        "images": n,
        "errors": errors,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_image": 1000 * cpu / n if n else None,
        "decode_s": decode_s,
        "faces_s": faces_s,
        "align_s": align_s,
        "faces_found": n_found,
        "crops": all_crops,
        "styles": np.full(len(all_crops), style_idx, dtype=np.int64),
        "per_image_crops": per_image_crops,
        "decode_locate_ips": n / (decode_s + faces_s) if decode_s + faces_s > 0 else None,
        "prepare_ips": n / wall if wall > 0 else None,
        "locator_faces_per_s": n_found / faces_s if faces_s > 0 else None,
        "locator_images_per_s": n / faces_s if faces_s > 0 else None,
        "gt_faces_ge_min": gt_big,
        "gt_hits": gt_hit,
        "gt_hit_rate": gt_hit / gt_big if gt_big else None,
        "false_faces_per_100": 100.0 * false_faces / scored if scored else None,
    }


def tile_sweep(
    items: Sequence[dict[str, Any]],
    settings: Sequence[str] = ("m48-det28", "m48-det28-windows", "m48-det24"),
    min_face_px: int = 48,
) -> list[dict[str, Any]]:
    """Locator cost vs hit rate for several smallest-face settings
    (:data:`beardnet.bench.locator_bench.CURVE`): CPU ms per photo, detector calls per photo
    (``windows_per_image``: whole levels for ``map``, windows for ``windows``), share of
    ground-truth faces >= ``min_face_px`` edited (IoU >= 0.5), its Wilson 95 % interval and
    false faces per 100 photos; ``tile_px`` holds the label."""
    from beardnet.bench.locator_bench import CURVE, locator_curve

    rows = locator_curve(items, {k: CURVE[k] for k in settings}, min_face_px)
    return [{**r, "tile_px": r["label"], "windows_per_image": r["calls_per_image"]} for r in rows]


def raw_network(
    net: Any, crops: np.ndarray, styles: np.ndarray, threads: int, batch_size: int = 32,
    repeats: int = 1,
) -> dict[str, float]:
    """The network alone on ``crops`` (uint8 NHWC) in this process: ``threads`` torch threads,
    ``batch_size``, ``torch.inference_mode``; the conversions the actor does are included.
    The best of ``repeats`` passes counts (after one warm-up batch)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net.eval()
        n = len(crops)
        if n == 0:
            return {"crops": 0.0, "seconds": 0.0, "crops_per_s": 0.0, "cpu_ms_per_crop": 0.0}

        def one_pass() -> tuple[float, float]:
            c0 = time.process_time()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, n, batch_size):
                    x = torch.from_numpy(crops[i : i + batch_size]).permute(0, 3, 1, 2)
                    x = x.float().div_(255.0)
                    s = torch.from_numpy(styles[i : i + batch_size]).long()
                    y, _ = net(x, s)
                    y.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
            return time.perf_counter() - t0, time.process_time() - c0

        with torch.inference_mode():  # warm-up batch
            x = torch.from_numpy(crops[:batch_size]).permute(0, 3, 1, 2).float().div_(255.0)
            net(x, torch.from_numpy(styles[:batch_size]).long())
        best, cpu = min(one_pass() for _ in range(max(1, repeats)))
        return {"crops": float(n), "seconds": best, "crops_per_s": n / best,
                "cpu_ms_per_crop": 1000 * cpu / n}
    finally:
        torch.set_num_threads(old)


def actor_peak_rss(
    model_uri: str | None,
    crops: np.ndarray,
    styles: np.ndarray,
    *,
    threads: int = 1,
    batch_size: int = 32,
    rounds: int = 3,
    s3: Any = None,
    num_cpus: float = 1.0,
) -> dict[str, float]:
    """Peak RSS (MB) of one Ray actor that builds the transform job's network stage
    (``beardnet.infer.stages.NetworkFn``: model loaded once) and runs ``rounds`` passes over
    ``crops``. Ray must be initialised."""
    import ray

    @ray.remote(num_cpus=num_cpus)
    class _BenchActor:
        def __init__(self) -> None:
            from beardnet.infer.stages import NetworkFn as _NetworkFn

            self.base_mb = self_peak_rss_mb()
            self.fn = _NetworkFn(model_uri, s3, threads, batch_size)
            self.loaded_mb = self_peak_rss_mb()

        def run(self, crops: np.ndarray, styles: np.ndarray, rounds: int) -> dict[str, float]:
            t0 = time.perf_counter()
            for _ in range(rounds):
                self.fn._run(crops, styles)
            dt = time.perf_counter() - t0
            return {
                "before_model_mb": self.base_mb,
                "after_load_mb": self.loaded_mb,
                "peak_rss_mb": self_peak_rss_mb(),
                "crops_per_s": rounds * len(crops) / dt if dt > 0 else 0.0,
            }

    actor = _BenchActor.remote()
    try:
        return ray.get(actor.run.remote(crops, styles, rounds), timeout=600)
    finally:
        ray.kill(actor)


def run(report: Any, located: dict[str, Any]) -> None:
    """Record the locator figures from a :func:`locate_scenes` result."""
    report.add("faces_per_s", located["locator_faces_per_s"], "faces/s",
               note=f"locator alone, one process, {located['images']} scenes, "
               f"{located['faces_found']} faces found")
    report.add("locator_images_per_s", located["locator_images_per_s"], "images/s")
    report.add("decode_locate_ips", located["decode_locate_ips"], "images/s",
               note="decode + locate, one process")
    report.add("prepare_cpu_ms_per_image", located["cpu_ms_per_image"], "ms",
               note="CPU time of decode + locate + align per photo (all threads)")
    if located.get("gt_hit_rate") is not None:
        from beardnet.bench.locator_bench import wilson

        lo, hi = wilson(located["gt_hits"], located["gt_faces_ge_min"])
        report.add("locator_hit_rate_95_low", lo, note=f"Wilson 95 % interval [{lo:.3f}, {hi:.3f}]")
        report.add("locator_hit_rate", located["gt_hit_rate"],
                   note=f"faces the transform edits (found and aligned) with IoU >= 0.5 vs "
                   f"the renderer's boxes, of {located['gt_faces_ge_min']} faces >= 48 px")
        report.add("false_faces_per_100_photos", located["false_faces_per_100"],
                   note="edited faces with IoU < 0.2 against every face of the scene")
