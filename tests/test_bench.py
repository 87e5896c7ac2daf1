"""Smoke tests of the benchmark code: report/targets, sampler bench at small N, helpers.

No timing assertions (the machine is shared); every check here is about correctness.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from beardnet.bench import faces_bench, sampler_bench
from beardnet.bench.cpu_by_process import CpuMonitor, role_of
from beardnet.bench.report import (
    REQUIRED,
    TARGETS,
    Report,
    cpu_probe_ms,
    default_stem,
    meets,
    ratio,
)
from beardnet.bench.rss import RssMonitor, self_peak_rss_mb


def test_ratio_and_meets():
    assert ratio(3.0, 4.0) == pytest.approx(0.75)
    assert ratio(None, 4.0) is None
    assert ratio(1.0, 0.0) is None
    assert meets(0.9, (">=", 0.85)) is True
    assert meets(0.84, (">=", 0.85)) is False
    assert meets(1.99, ("<", 2.0)) is True
    assert meets(2.0, ("<", 2.0)) is False
    assert meets(None, ("<", 2.0)) is None
    with pytest.raises(ValueError):
        meets(1.0, ("~", 1.0))


def test_report_json_and_markdown(tmp_path):
    r = Report(mode="quick", machine={"host": "h/x y", "cpus_usable": 2, "cpu_count": 2,
                                      "cpu_model": "Test CPU"})
    r.add("transform_vs_raw", 0.3)
    r.add("sampler_10m_s", 1.25, "s")
    r.add("faces_per_s", 42.0, "faces/s", note="a note")
    r.errors["train"] = "RuntimeError: boom"
    d = r.to_dict()
    for name in REQUIRED:  # every required metric is present, None when not measured
        assert name in d and name in d["metrics"]
    assert d["transform_vs_raw"] == 0.3
    assert d["targets_met"]["transform_vs_raw"] is False
    assert d["targets_met"]["sampler_10m_s"] is True
    assert d["targets_met"]["train1_vs_plain"] is None
    assert d["metrics"]["faces_per_s"]["target"] is None
    md = r.to_markdown()
    assert "| metric | value | target | met? |" in md
    assert "| `transform_vs_raw` | 0.30 | >= 0.35 | **no** |" in md
    assert "| `sampler_10m_s` | 1.25 s | < 2 | yes |" in md
    assert "Test CPU" in md and "boom" in md and "a note" in md
    jp, mp = r.write(tmp_path, stem="x")
    assert json.loads(jp.read_text())["sampler_10m_s"] == 1.25
    assert mp.read_text() == md
    jp2, _ = r.write(tmp_path)  # default stem: <date>-<host>-quick, host made file-safe
    assert jp2.name.endswith("-h_x_y-quick.json")
    assert "CPU probe" not in md  # only when measured
    r.machine["cpu_probe_ms"] = 1.234
    assert "CPU probe (one 3x3 conv, 32 ch, 128 px, 1 thread): 1.23 ms at the start." \
        in r.to_markdown()
    r.machine["cpu_probe_end_ms"] = 1.5
    assert "1.23 ms at the start, 1.50 ms at the end." in r.to_markdown()


def test_cpu_probe_measures_and_restores_threads():
    import torch

    before = torch.get_num_threads()
    ms = cpu_probe_ms(repeats=2)
    assert 0.0 < ms < 10_000.0
    assert torch.get_num_threads() == before


def test_default_stem():
    import datetime as dt

    assert default_stem("full", "box", dt.date(2026, 1, 2)) == "2026-01-02-box"
    assert default_stem("quick", "a b", dt.date(2026, 1, 2)) == "2026-01-02-a_b-quick"
    assert set(TARGETS) == set(REQUIRED)


def test_skewed_categories_shares():
    cats = sampler_bench.skewed_categories(200_000, seed=1)
    assert cats.dtype == np.int16
    shares = np.bincount(cats, minlength=5) / len(cats)
    from beardnet.categories import DEFAULT

    for name, p in sampler_bench.SKEW.items():
        assert shares[DEFAULT.index(name)] == pytest.approx(p, abs=0.005)


def test_sampler_bench_small():
    r = sampler_bench.bench_sampler_once(20_000, repeats=1)
    assert r["rows"] == 20_000
    assert r["batch_size"] == 20
    assert r["batches"] == 20_000 // 20
    assert r["plan_s"] > 0 and r["first_batch_s"] <= r["plan_s"]
    # the plan holds batches x 20 int64 indices at least once (tracemalloc sees numpy buffers)
    assert r["peak_mb"] * 2**20 >= r["batches"] * 20 * 8


def test_sampler_run_records_metrics(monkeypatch):
    # small sizes through the same code path as the real run
    rep = Report(machine={})
    calls = []
    real = sampler_bench.bench_sampler_once

    def small(n, **kw):
        calls.append(n)
        return real(n // 1000, repeats=1)

    monkeypatch.setattr(sampler_bench, "bench_sampler_once", small)
    sampler_bench.run(rep)
    assert calls == [1_000_000, 10_000_000]
    for k in ("sampler_1m_s", "sampler_10m_s", "sampler_10m_peak_mb", "sampler_10m_cpu_s"):
        assert rep.metrics[k].value is not None and rep.metrics[k].value > 0


def test_scene_scoring_counts_hits_and_false_faces():
    from beardnet.bench.locator_bench import score_faces
    from beardnet.faces import Face

    def face(box):
        return Face(box=np.array(box, np.float32), score=0.9, left_eye=None, right_eye=None,
                    mouth=None)

    truth = [[0, 0, 60, 60], [100, 0, 160, 60], [200, 0, 220, 20]]  # the last is too small
    found = [face([2, 2, 60, 62]), face([300, 300, 360, 360]), face([100, 0, 125, 60])]
    # the first truth is hit; the second is found only partly (IoU 0.42: neither a hit nor a
    # false face); the find far from every face is false; the 20 px face is not counted
    assert score_faces(found, truth, 48) == (2, 1, 1)


def test_real_set_hits_matches_labelled_faces(tmp_path):
    """The locator bench's real-set check matches a labelled face and misses a wrong label."""
    import shutil
    from pathlib import Path

    from beardnet.bench.locator_bench import CURVE, real_set_hits

    src = Path(__file__).parents[1] / "beardnet" / "assets" / "real_pd" / "grace_hopper.jpg"
    shutil.copy(src, tmp_path / "p.jpg")
    (tmp_path / "labels.csv").write_text(
        "file,x0,y0,x1,y1,facial_hair,identity,split\n"
        "p.jpg,165,105,360,345,none,hopper,eval\n"
        "p.jpg,0,0,80,80,none,nobody,eval\n"
    )
    (row,) = real_set_hits(str(tmp_path), {"m48-det28": CURVE["m48-det28"]})
    assert row["real_photos"] == 1 and row["real_faces"] == 2
    assert row["matched_iou50"] == row["matched_iou30"] == 1
    assert row["cpu_ms_per_photo"] > 0


def test_rss_monitor_sees_ray_titled_process():
    # a child whose title looks like a Ray actor's, allocating ~60 MB
    code = "import time; b = bytearray(60 * 2**20); b[::4096] = b'x' * len(b[::4096]); " \
           "time.sleep(3)"
    p = subprocess.Popen(["ray::MapWorker(MapBatches(_NetworkFn))", "-c", code],
                         executable=sys.executable)
    try:
        with RssMonitor({"network_actor": r"_NetworkFn"}, interval_s=0.05) as mon:
            deadline = time.time() + 10
            while time.time() < deadline and (mon.peak_mb("network_actor") or 0) < 60:
                time.sleep(0.1)
        peak = mon.peak_mb("network_actor")
        assert peak is not None and peak >= 60
        assert mon.summary()["network_actor"]["processes"] == 1
    finally:
        p.kill()
        p.wait()


def test_cpu_monitor_counts_a_child_and_its_grandchild_by_role():
    # a child titled like Ray's network actor burns ~0.6 s of CPU, its own child ~0.6 s more
    burn = ("import time; t = time.process_time(); "
            "exec('while time.process_time() - t < 0.6: pass')")
    code = f"import subprocess; c = subprocess.Popen([{sys.executable!r}, '-c', {burn!r}]); " \
           f"{burn}; c.wait()"
    with CpuMonitor(interval_s=0.05) as mon:
        p = subprocess.Popen(["ray::MapWorker(MapBatches(NetworkFn))", "-c", code],
                             executable=sys.executable)
        p.wait()
    roles = mon.by_role()
    # each burnt 0.6 s; a process's CPU after its last poll is lost (one interval, longer when
    # a poll is slowed by a busy machine), hence the margin: without the walk up the parent
    # links the grandchild would count 0
    assert roles["MapWorker(...NetworkFn)"] >= 0.35
    assert roles["python"] >= 0.35  # the grandchild
    assert mon.total_s() >= 0.8
    assert mon.summary(2)["total_ms"] == pytest.approx(500.0 * mon.total_s())


def test_cpu_monitor_window_between_polls():
    mon = CpuMonitor(keep_history=True)
    mon.history = [(10.0, {"a": 1.0}), (11.0, {"a": 2.0, "b": 0.5}), (12.0, {"a": 2.5, "b": 1.5}),
                   (13.0, {"a": 4.0, "b": 1.5})]
    roles, covered = mon.between(10.5, 12.2)  # polls at 11 and 12 are inside
    assert covered == pytest.approx(1.0)
    assert roles == {"b": pytest.approx(1.0), "a": pytest.approx(0.5)}  # largest first
    assert list(roles) == ["b", "a"]
    assert mon.between(10.5, 11.5) == ({}, 0.0)  # one poll inside: nothing to difference
    # live: a child burns 0.8 s of CPU while this thread waits (a busy loop here would starve
    # the monitor's thread of the GIL)
    burn = "import time; t = time.process_time()\nwhile time.process_time() - t < 0.8: pass"
    with CpuMonitor(interval_s=0.05, keep_history=True) as live:
        t0 = time.time()
        subprocess.run([sys.executable, "-c", burn], check=True)
        t1 = time.time()
    roles, covered = live.between(t0, t1)
    assert 0.2 < covered <= t1 - t0
    assert sum(v for r, v in roles.items() if r != "driver") > 0.3  # the child's CPU


def test_role_names():
    assert role_of("ray::_StatsActor") == "_StatsActor"
    assert role_of("ray::IDLE") == "IDLE"
    assert role_of("ray::LeaseClock.tick") == "LeaseClock"
    assert role_of("/x/.venv/bin/python -m beardnet.infer.sandbox") == "sandbox"
    assert role_of("/usr/bin/raylet --x") == "raylet"
    assert role_of("/x/python /x/ray/_private/workers/default_worker.py --a") == "worker start-up"
    assert role_of("anything", is_self=True) == "driver"


def test_self_peak_rss_mb():
    assert self_peak_rss_mb() > 10


def test_raw_network_tiny():
    import torch

    from beardnet.model.unet import BeardNet

    torch.manual_seed(0)
    net = BeardNet(base=8, size=32)
    crops = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    styles = np.zeros(5, dtype=np.int64)
    before = torch.get_num_threads()
    r = faces_bench.raw_network(net, crops, styles, threads=1, batch_size=2)
    assert r["crops"] == 5 and r["crops_per_s"] > 0
    assert torch.get_num_threads() == before  # thread count restored


def test_train_bench_feeds_the_jobs_data_path(tmp_path):
    """The train bench's batches come from the job's dataset, ratio sampler and loader: the
    configured composition in every batch, rank shares disjoint, epochs rolling over."""
    import itertools

    from beardnet.bench.train_bench import bench_config, job_batches, render_crops

    uri = render_crops(str(tmp_path / "crops"), identities=6, size=64)
    cfg = bench_config(uri)
    assert cfg.batch_size() == 10
    seen = list(itertools.islice(job_batches(cfg), 13))  # 10 batches per epoch: into epoch 1
    for b in seen:
        assert b["src"].shape == (10, 3, 128, 128)  # data.size: the job resizes
        assert np.bincount(b["style"].numpy(), minlength=5).tolist() == [2, 2, 2, 2, 2]
    assert seen[0]["epoch"][0] == 0 and seen[-1]["epoch"][0] == 1
    r0 = next(job_batches(cfg, 0, 2))["index"].tolist()
    r1 = next(job_batches(cfg, 1, 2))["index"].tolist()
    assert not set(r0) & set(r1)


def test_thread_vs_main_times_both_threads(tmp_path):
    import threading

    import torch

    from beardnet.bench.thread_bench import render_crops, thread_vs_main

    old = torch.get_num_threads()
    uri = render_crops(str(tmp_path / "crops"), identities=6, size=64)
    try:
        pairs = thread_vs_main(uri, 1, steps=1, rounds=2)
    finally:
        torch.set_num_threads(old)
    assert len(pairs) == 2 and all(m > 0 and t > 0 for m, t in pairs)
    assert not [t for t in threading.enumerate() if t.name.startswith("Thread-") and t.is_alive()]


def test_bench_config_and_help():
    import argparse

    from beardnet.bench import cli as bench_cli

    p = argparse.ArgumentParser()
    bench_cli.add_arguments(p)
    from beardnet.config import add_config_arguments

    add_config_arguments(p)
    args = p.parse_args(["--quick", "--parts", "sampler", "--set",
                         "transform.ray.network_actors=2", "--set", "n_scenes=7"])
    cfg = bench_cli._config(args)
    assert cfg.quick and cfg.parts == ["sampler"] and cfg.n_scenes == 7
    assert cfg.transform == {"ray": {"network_actors": 2}}
    bad = p.parse_args(["--parts", "sampler,nope"])
    from beardnet.config import ConfigError

    with pytest.raises(ConfigError):
        bench_cli._config(bad)
    from beardnet.raysession import project_root

    out = subprocess.run([sys.executable, "-m", "beardnet.cli", "bench", "--help"],
                         capture_output=True, text=True, timeout=60, cwd=project_root(), check=False,
                         env={**os.environ, "PYTHONPATH": project_root()})
    assert out.returncode == 0 and "--quick" in out.stdout


def test_markdown_tile_sweep_table():
    r = Report(machine={})
    r.details["locator_tile_sweep"] = [
        {"tile_px": 256, "cpu_ms_per_image": 70.0, "windows_per_image": 16.0, "hit_rate": 1.0},
        {"tile_px": None, "cpu_ms_per_image": 16.0, "windows_per_image": 1.0, "hit_rate": None},
    ]
    md = r.to_markdown()
    assert "| 256 | 16.0 | 70 | 1.00 |" in md
    assert "| whole image | 1.0 | 16 | n/a |" in md
