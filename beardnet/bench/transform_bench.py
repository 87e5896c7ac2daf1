"""Transform benchmark: the Ray Data job end to end vs the raw network on the same crops.

1. Render ``n`` synthetic scene photos (JPEG) into ``BASE/scenes/`` (local S3 bucket).
2. In this process, on the same photos: ``prepare`` (decode + locate + align) one by one
   (-> decode+locate rate, locator faces/s, hit rate, and the crops), then the raw network on
   those crops (batch 32, the network actor's thread count, ``torch.inference_mode``).
3. ``run_transform`` over ``BASE/scenes/`` -> ``BASE/out/`` with the job's defaults, watching
   the Ray workers' peak RSS; its run summary gives images/s and the per-stage seconds.
4. The raw network once more (the better pass counts, so noise cannot flatter the ratio).

``transform_vs_raw`` = end-to-end images/s / (images / raw network seconds for their crops).
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def _encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _scene(seed: int) -> tuple[np.ndarray, list[list[float]] | None]:
    """One scene photo (RGB) and its face boxes: the renderer's scenes when present, else
    aligned crops pasted on a plain background (same faces, simpler photo; no face boxes,
    so no hit rate)."""
    try:
        from beardnet.synth import scenes as scenes_mod
    except ImportError:
        scenes_mod = None
    if scenes_mod is not None and hasattr(scenes_mod, "render_scene"):
        sc = scenes_mod.render_scene(seed)
        boxes = []
        for f in getattr(sc, "faces", []) or []:
            box = f.get("box") if isinstance(f, dict) else getattr(f, "box", None)
            if box is not None:
                boxes.append([float(v) for v in box])
        return np.asarray(sc.image, dtype=np.uint8), boxes
    return _fallback_scene(seed)


def _fallback_scene(seed: int) -> tuple[np.ndarray, None]:
    import cv2

    from beardnet.categories import DEFAULT_CATEGORIES
    from beardnet.synth.render import render_crop

    rng = np.random.default_rng([seed, 7])
    w, h = int(rng.integers(384, 769)), int(rng.integers(384, 769))
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(40, 220, 3, dtype=np.uint8)
    boxes = []
    for j in range(int(rng.integers(0, 4))):
        side = int(rng.integers(96, max(97, min(w, h) // 2)))
        x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        if any(not (x0 + side < b[0] or b[2] < x0 or y0 + side < b[1] or b[3] < y0)
               for b in boxes):
            continue
        cat = DEFAULT_CATEGORIES[int(rng.integers(0, len(DEFAULT_CATEGORIES)))]
        crop = render_crop(seed * 10 + j, cat, 128).image
        img[y0 : y0 + side, x0 : x0 + side] = cv2.resize(crop, (side, side),
                                                       interpolation=cv2.INTER_AREA)
        boxes.append([x0, y0, x0 + side, y0 + side])
    return img, None


def _render_chunk(seeds: list[int]) -> list[dict[str, Any]]:
    items = []
    for sd in seeds:
        img, boxes = _scene(sd)
        items.append({"seed": sd, "data": _encode_jpeg(img), "boxes": boxes})
    return items


def make_scenes(n: int, seed: int, prefix_uri: str, s3: Any = None) -> list[dict[str, Any]]:
    """Render ``n`` scenes (on Ray tasks when Ray is up), write them as
    ``prefix_uri/NNNNN.jpg``; returns the items (``key``, ``data``, ``boxes``)."""
    from beardnet import storage

    seeds = [seed + i for i in range(n)]
    chunks = [seeds[i : i + 8] for i in range(0, n, 8)]
    try:
        import ray

        use_ray = ray.is_initialized() and len(chunks) > 1
    except ImportError:
        use_ray = False
    if use_ray:
        remote = ray.remote(num_cpus=1)(_render_chunk)
        rendered = [it for part in ray.get([remote.remote(c) for c in chunks]) for it in part]
    else:
        rendered = _render_chunk(seeds)
    items = [
        {"key": f"{i:05d}.jpg", "data": it["data"], "boxes": it["boxes"]}
        for i, it in enumerate(rendered)
    ]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda it: storage.write_bytes(
            storage.join(prefix_uri, it["key"]), it["data"], s3=s3), items))
    return items


def ensure_model(base_uri: str, s3: Any = None) -> tuple[str | None, Any]:
    """The shipped model when there is one (``None``), else a random artifact under
    ``base_uri/model`` (same architecture, so the same cost). Returns (uri, LoadedModel)."""
    from beardnet.model import load

    try:
        return None, load(None)
    except Exception:  # noqa: BLE001 - no shipped model yet
        from beardnet import storage
        from beardnet.model import save_artifact
        from beardnet.model.unet import BeardNet

        uri = storage.join(base_uri, "model")
        save_artifact(BeardNet(), uri, {"training": {"note": "random weights (bench)"}}, s3=s3)
        return uri, load(uri, s3=s3)


def run(
    report: Any,
    base_uri: str,
    *,
    n_scenes: int,
    s3: Any = None,
    seed: int = 1000,
    transform_overrides: dict[str, Any] | None = None,
    sweep_tiles: bool = False,
    variants: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Run the transform benchmark under ``base_uri`` (Ray must be initialised).

    ``variants`` (name -> per-section overrides) run the job again on the same photos, each
    to its own output, and are reported as ``transform_e2e_ips_<name>`` and their ratio to the
    main run (same machine, minutes apart)."""
    from beardnet import storage
    from beardnet.bench import faces_bench
    from beardnet.bench.report import ratio
    from beardnet.bench.rss import RssMonitor
    from beardnet.infer.config import TransformConfig
    from beardnet.infer.job import run_transform

    out: dict[str, Any] = {"n_scenes": n_scenes}
    in_uri = storage.join(base_uri, "scenes")
    out_uri = storage.join(base_uri, "out")
    t0 = time.perf_counter()
    items = make_scenes(n_scenes, seed, in_uri, s3=s3)
    out["render_s"] = time.perf_counter() - t0
    out["bytes_in"] = int(sum(len(it["data"]) for it in items))

    model_uri, model = ensure_model(base_uri, s3=s3)
    out["model"] = model.model_id

    overrides = dict(transform_overrides or {})
    cfg_dict: dict[str, Any] = {
        "job": {"input": in_uri, "output": out_uri, "model": model_uri, "style": "full_beard"},
        "ray": {"progress": "off"},
    }
    for section, values in overrides.items():
        cfg_dict.setdefault(section, {}).update(values)
    cfg = TransformConfig.model_validate(cfg_dict)
    threads = cfg.ray.torch_threads or max(1, round(cfg.ray.network_num_cpus or 1))
    batch = cfg.ray.network_batch_size
    style_idx = model.categories.index(cfg.job.style or "full_beard")

    # in-process: decode + locate (+ align), the crops, the raw network
    located = faces_bench.locate_scenes(
        items, faces=cfg.image.faces, min_face_px=cfg.image.min_face_px,
        crop_size=int(model.input_size), style_idx=style_idx,
    )
    crops, styles = located.pop("crops"), located.pop("styles")
    located.pop("per_image_crops", None)
    out["located"] = located
    faces_bench.run(report, located)
    if sweep_tiles:
        sweep = faces_bench.tile_sweep(items[:60], min_face_px=cfg.image.min_face_px)
        out["locator_tile_sweep"] = sweep
        report.details["locator_tile_sweep"] = sweep
    raw1 = faces_bench.raw_network(model.net, crops, styles, threads, batch, repeats=2)

    # end to end, with the Ray workers' peak RSS watched
    roles = {
        "network_actor": r"NetworkFn",
        "prepare_task": r"prepare_batch",
        "finish_task": r"finish_batch",
    }
    with RssMonitor(roles) as mon:
        t0 = time.perf_counter()
        summary = run_transform(cfg, s3)
        e2e_wall = time.perf_counter() - t0
    out["rss"] = mon.summary()
    raw2 = faces_bench.raw_network(model.net, crops, styles, threads, batch, repeats=2)
    raw = raw1 if raw1["crops_per_s"] >= raw2["crops_per_s"] else raw2
    out["raw_network"] = {"before": raw1, "after": raw2, "threads": threads, "batch": batch}

    images = int(summary.get("images") or 0)
    e2e_ips = summary.get("images_per_s") or (images / e2e_wall if e2e_wall else None)
    raw_ips = n_scenes / raw["seconds"] if raw["seconds"] > 0 else None
    out["summary"] = {k: summary.get(k) for k in (
        "images", "images_per_s", "wall_s", "list_s", "status", "faces", "faces_small",
        "stage_s", "stage_share", "errors")}
    out["e2e_wall_s"] = e2e_wall

    report.add("transform_e2e_ips", e2e_ips, "images/s",
               note=f"{images} scenes, {summary.get('faces')} faces, run wall "
               f"{summary.get('wall_s')} s (model load, lease, listing included)")
    report.add("raw_network_ips", raw_ips, "images/s",
               note=f"{len(crops)} crops, batch {batch}, {threads} thread(s), "
               f"{raw['crops_per_s']:.0f} crops/s")
    report.add("raw_network_crops_per_s", raw["crops_per_s"], "crops/s")
    report.add("network_cpu_ms_per_crop", raw["cpu_ms_per_crop"], "ms")
    report.add("transform_vs_raw", ratio(e2e_ips, raw_ips))
    report.add("transform_vs_decode_locate", ratio(e2e_ips, located["decode_locate_ips"]),
               note="end to end / (decode + locate alone, one process)")

    # share of time per stage (summed per-photo seconds from the manifest)
    stage_s = {k: float(v) for k, v in (summary.get("stage_s") or {}).items()}
    total = sum(stage_s.values())
    for k, v in stage_s.items():
        name = k.removesuffix("_s")
        report.add(f"share_{name}", v / total if total else None,
                   note="of summed per-photo stage seconds" if k == "read_s" else "")
    # the CPU ceiling: all stages perfectly overlapped on every usable core
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if images and total:
        per_image = total / images
        ceiling = (cores or 1) / per_image
        out["cpu_ceiling_ips"] = ceiling
        report.add("transform_cpu_ceiling_ips", ceiling, "images/s",
                   note=f"{cores} cores / {per_image * 1000:.0f} ms of stage time per photo")
        report.add("transform_vs_cpu_ceiling", ratio(e2e_ips, ceiling),
                   note="how well the job overlaps its stages on this machine")
        report.add("transform_vs_raw_best_possible", ratio(ceiling, raw_ips),
                   note="transform_vs_raw if every stage overlapped perfectly on these cores: "
                   "cores x network share of the per-photo time")

    actor_mb = mon.peak_mb("network_actor")
    source = "the job's network actor (VmHWM)"
    if actor_mb is None:
        iso = faces_bench.actor_peak_rss(model_uri, crops, styles, threads=threads,
                                         batch_size=batch, s3=s3)
        out["actor_isolated"] = iso
        actor_mb = iso["peak_rss_mb"]
        source = "a bench actor running the job's network stage"
    report.add("actor_peak_rss_mb", actor_mb, "MB", note=source)
    report.add("prepare_worker_peak_rss_mb", mon.peak_mb("prepare_task"), "MB",
               note="decode + MediaPipe worker process")
    for name, extra in (variants or {}).items():
        try:
            vdict = {sec: dict(vals) for sec, vals in cfg_dict.items()}
            vdict["job"] = {**vdict["job"], "output": storage.join(base_uri, f"out-{name}")}
            for section, values in extra.items():
                vdict.setdefault(section, {}).update(values)
            vsum = run_transform(TransformConfig.model_validate(vdict), s3)
        except Exception as exc:  # noqa: BLE001 - a bad variant must not lose the main run
            report.errors[f"transform variant {name}"] = f"{type(exc).__name__}: {exc}"
            continue
        vips = vsum.get("images_per_s")
        out.setdefault("variants", {})[name] = {
            "overrides": extra, "images_per_s": vips, "wall_s": vsum.get("wall_s"),
            "stage_s": vsum.get("stage_s"),
        }
        report.add(f"transform_e2e_ips_{name}", vips, "images/s",
                   note=f"variant {extra}")
        report.add(f"transform_{name}_vs_default", ratio(vips, e2e_ips))

    report.details["transform"] = out
    return out
