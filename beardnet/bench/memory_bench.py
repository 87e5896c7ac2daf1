"""Memory of the transform on large photos: peak RSS per worker and object-store spilling.

For each size (12, 24, 48 MP) a folder of JPEGs is generated (one synthetic face scene
upscaled onto a textured background, each photo its own seed) and the transform job runs over
it with default settings. Reported per size:

- ``mem_<N>mp_worker_peak_mb``: the largest ``VmHWM`` of a Ray worker running the prepare or
  finish stage *plus* that of its sandbox child (where the pixels live), i.e. one worker's
  whole footprint (target for 24 MP: < 1536 MB);
- ``mem_<N>mp_actor_peak_mb``: the network actor;
- ``mem_<N>mp_spilled_mb``: bytes Ray spilled from the object store during the run (target 0).

Sizes run in increasing order on the same Ray workers; ``VmHWM`` is a process's lifetime
peak, so each figure is the peak up to and including that size.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any

import numpy as np

from beardnet.bench.rss import RssMonitor

#: megapixels -> (width, height)
SIZES: dict[int, tuple[int, int]] = {12: (4000, 3000), 24: (6000, 4000), 48: (8000, 6000)}


def make_photo(seed: int, width: int, height: int, quality: int = 90) -> bytes:
    """One JPEG: a textured background with one synthetic scene (faces) upscaled onto it."""
    import cv2
    from PIL import Image

    from beardnet.synth.scenes import render_scene

    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, (height // 64 + 1, width // 64 + 1, 3), dtype=np.uint8)
    bg = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    bg = np.clip(bg.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    scene = np.asarray(render_scene(seed, size=768, n_faces=2).image, np.uint8)
    side = int(height * 0.6)
    sw = int(side * scene.shape[1] / scene.shape[0])
    big = cv2.resize(scene, (min(sw, width), side), interpolation=cv2.INTER_CUBIC)
    y0, x0 = (height - big.shape[0]) // 2, (width - big.shape[1]) // 2
    bg[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]] = big
    buf = io.BytesIO()
    Image.fromarray(bg).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _monitor() -> RssMonitor:
    """Stage workers, network actors and the stage workers' sandbox children."""
    return RssMonitor({"sandbox": r"beardnet\.infer\.sandbox",
                       "actor": r"^ray::.*NetworkFn",
                       "stage": r"^ray::.*(prepare_batch|finish_batch)"}, ray_only=False)


def _peaks(mon: RssMonitor) -> dict[str, float | None]:
    """``worker`` (stage worker + its sandbox child, the largest pair), ``stage``,
    ``sandbox``, ``actor`` in MB."""
    mb = mon.peaks_mb()
    pairs = []
    for pid, v in mb.items():
        if mon.role_of.get(pid) == "stage":
            kids = [mb[c] for c, pp in mon.parent.items() if pp == pid and c in mb]
            pairs.append(v + (max(kids) if kids else 0.0))
    return {"worker": max(pairs) if pairs else None, "stage": mon.peak_mb("stage"),
            "sandbox": mon.peak_mb("sandbox"), "actor": mon.peak_mb("actor")}


def _spilled_mb() -> float | None:
    """MB spilled by the object store since Ray started (None when Ray does not say)."""
    try:
        from ray._private.internal_api import memory_summary

        text = memory_summary(stats_only=True)
    except Exception:  # noqa: BLE001 - an internal API: the figure is optional
        return None
    m = re.search(r"Spilled\s+([\d.]+)\s+MiB", text)
    return float(m.group(1)) if m else 0.0


def run(report: Any, base_uri: str, *, quick: bool, s3: Any = None,
        model_uri: str | None = None) -> dict[str, Any]:
    """Generate the folders under ``base_uri``, run the job on each, record the figures."""
    from concurrent.futures import ThreadPoolExecutor

    from beardnet import storage
    from beardnet.bench.transform_bench import ensure_model
    from beardnet.infer.config import TransformConfig
    from beardnet.infer.job import run_transform

    n = 3 if quick else 8
    if model_uri is None:
        model_uri, _ = ensure_model(base_uri, s3=s3)
    out: dict[str, Any] = {"photos_per_folder": n}
    for mp, (w, h) in SIZES.items():
        folder = storage.join(base_uri, f"mem{mp}")
        t0 = time.perf_counter()

        def put(i: int, folder: str = folder, w: int = w, h: int = h, mp: int = mp) -> int:
            data = make_photo(1000 * mp + i, w, h)
            storage.write_bytes(storage.join(folder, f"{i:03d}.jpg"), data, s3=s3)
            return len(data)

        with ThreadPoolExecutor(2) as ex:
            sizes = list(ex.map(put, range(n)))
        gen_s = time.perf_counter() - t0
        cfg = TransformConfig.model_validate({
            "job": {"input": folder, "output": storage.join(base_uri, f"out{mp}"),
                    "model": model_uri},
            "ray": {"progress": "off"},
        })
        spilled0 = _spilled_mb()
        with _monitor() as mon:
            summary = run_transform(cfg, s3)
        spilled1 = _spilled_mb()
        peaks = _peaks(mon)
        spilled = None if spilled0 is None or spilled1 is None else spilled1 - spilled0
        out[f"{mp}mp"] = {"peaks_mb": peaks, "spilled_mb": spilled, "generate_s": gen_s,
                          "mean_jpeg_mb": sum(sizes) / len(sizes) / 1e6,
                          "status": summary.get("status"), "wall_s": summary.get("wall_s")}
        note = f"{n} photos {w}x{h}, mean JPEG {sum(sizes) / len(sizes) / 1e6:.1f} MB"
        report.add(f"mem_{mp}mp_worker_peak_mb", peaks["worker"], "MB",
                   note=note + "; stage worker + its sandbox child"
                   + ("; target < 1536" if mp == 24 else ""))
        report.add(f"mem_{mp}mp_actor_peak_mb", peaks["actor"], "MB")
        report.add(f"mem_{mp}mp_spilled_mb", spilled, "MB", note="object store spilling")
        images = int(summary.get("images") or 0)
        stage = summary.get("stage_s") or {}
        if images:
            report.add(f"stage_s_per_photo_{mp}mp", sum(stage.values()) / images, "s",
                       note="the job's summed stage seconds per photo (" + ", ".join(
                           f"{k[:-2]} {v / images:.2f}" for k, v in stage.items()) + ")")
    out["locate_24mp"] = locate_big_photo(report)
    report.details["memory"] = out
    return out


def locate_big_photo(report: Any) -> dict[str, Any]:
    """Face location alone on a 6000x4000 JPEG with one face (reduced decode + locate, CPU
    seconds, best of 2): the figures of ``locate_24mp_*``."""
    from beardnet.bench.locator_bench import big_photo, locate_photo
    from beardnet.faces import box_iou

    data, truth = big_photo(0)
    res = locate_photo(data, 48)
    hit = any(box_iou(np.asarray(b, float), np.asarray(truth, float)) >= 0.5
              for b in res["boxes"])
    report.add("locate_24mp_cpu_s", res["locate_cpu_s"], "s",
               note=f"6000x4000 JPEG, one face; decoded at {res['reduced'][0]}x"
               f"{res['reduced'][1]} in {res['decode_cpu_s']:.2f} s CPU; target <= 0.5")
    report.add("locate_24mp_faces", res["faces"],
               note=f"faces found (1 is right; the true face {'found' if hit else 'MISSED'})")
    return {**res, "truth": truth, "hit": hit}
