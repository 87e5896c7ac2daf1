"""The batch transform job (issue 4): manifest/summary records, config and CLI (fast), and the
Ray Data job on the local S3 server (slow): keys and formats kept, every bad input recorded,
nothing lost, incremental re-runs, kill-and-rerun, concurrent runs refused, unsafe keys."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

from beardnet import storage
from beardnet.config import ConfigError, load_config
from beardnet.infer import runlog
from beardnet.infer.cli import add_arguments, overrides_from_args
from beardnet.infer.config import TransformConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ fast: records
def test_manifest_rows_parts_and_done_keys(tmp_path) -> None:
    out = str(tmp_path / "out")
    rows = [
        runlog.empty_row("a.jpg", "r1", "m1") | {"status": "ok", "faces": 2, "bytes_in": 10,
                                                  "bytes_out": 12, "network_s": 0.5},
        runlog.empty_row("b.jpg", "r1", "m1") | {"status": "error", "error": "decode: empty"},
        runlog.empty_row("c.png", "r1", "m1") | {"status": "no_face", "bytes_out": 7},
    ]
    t = runlog.rows_to_table(rows)
    assert t.schema == runlog.manifest_schema()
    assert runlog.write_part(out, "r1", t) != ""
    assert runlog.write_part(out, "r1", t.slice(0, 0)) == ""  # empty parts are not written
    t2 = runlog.rows_to_table([runlog.empty_row("b.jpg", "r2", "m1") | {"status": "ok"}])
    runlog.write_part(out, "r2", t2)
    m = runlog.read_manifest(out)
    assert m.num_rows == 4
    assert sorted(runlog.done_keys(out).to_pylist()) == ["a.jpg", "b.jpg", "c.png"]
    agg = runlog.merge_aggregates([runlog.aggregate(t), runlog.aggregate(t2)])
    assert agg["status"] == {"ok": 2, "error": 1, "no_face": 1}
    assert agg["images"] == 4 and agg["faces"] == 2 and agg["bytes_out"] == 19
    assert agg["stage_s"]["network_s"] == pytest.approx(0.5)
    assert runlog.stage_shares(agg["stage_s"])["network_s"] == pytest.approx(1.0)
    runlog.write_summary(out, "r1", {"run_id": "r1", "images": 3})
    assert runlog.read_summary(out, "r1")["images"] == 3
    assert runlog.read_manifest(str(tmp_path / "nothing")).num_rows == 0


def test_run_ids_sort_by_time_and_are_unique() -> None:
    a, b = runlog.new_run_id(), runlog.new_run_id()
    assert a != b and len(a) == len(b) and a[:8].isdigit()


# ------------------------------------------------------------------------------ fast: config
def _parse(argv: list[str]) -> argparse.Namespace:
    from beardnet.config import add_config_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    add_config_arguments(p)
    return p.parse_args(argv)


def test_cli_flags_become_config(tmp_path) -> None:
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("job:\n  style: goatee\n  jpeg_quality_typo: 3\n")
    args = _parse(["--input", "s3://b/in dir/ü/", "--output", "s3://c/out", "--incremental",
                   "--extensions", "JPG,png", "--network-actors", "2", "--style", "mustache"])
    cfg = load_config(TransformConfig, None, overrides_from_args(args))
    assert cfg.job.input == "s3://b/in dir/ü/"
    assert cfg.job.incremental is True
    assert cfg.job.extensions == [".jpg", ".png"]
    assert cfg.ray.network_actors == 2
    assert cfg.job.style == "mustache"
    with pytest.raises(ConfigError, match="job.jpeg_quality_typo"):
        load_config(TransformConfig, str(cfg_file), [])
    with pytest.raises(ConfigError, match="on_no_face"):
        load_config(TransformConfig, None, ["job.on_no_face=delete"])
    with pytest.raises(ConfigError, match="style"):
        load_config(TransformConfig, None, ["job.style="])


def test_config_refuses_secrets_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match="secret_access_key") as e:
        load_config(TransformConfig, None, ["s3.secret_access_key=hunter2hunter2"])
    assert "hunter2" not in str(e.value)
    cfg = load_config(TransformConfig, None, ["s3.profile=archive", "job.no_lease=true"])
    assert cfg.s3.settings().profile == "archive" and cfg.job.no_lease
    assert json.loads(json.dumps(cfg.public_dict()))["s3"]["profile"] == "archive"


def test_transform_help_lists_flags() -> None:
    r = subprocess.run([sys.executable, "-m", "beardnet.cli", "transform", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    for flag in ("--input", "--output", "--model", "--style-map", "--incremental", "--set"):
        assert flag in r.stdout


# ------------------------------------------------------------------------------ slow: the job
@lru_cache(maxsize=64)
def _face(seed: int, size: int = 128) -> np.ndarray:
    from beardnet.synth.render import render_crop

    crop = render_crop(seed, ("none", "goatee", "full_beard", "mustache")[seed % 4], 128).image
    if size != 128:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
    return crop


def _scene(seed: int, faces: int = 1, w: int = 256, h: int = 256, face_px: int = 128) -> np.ndarray:
    """A flat background with ``faces`` rendered faces placed on a grid (no overlap)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(40, 210, 3, dtype=np.uint8)
    cols = max(1, w // face_px)
    for i in range(faces):
        x, y = (i % cols) * face_px, (i // cols) * face_px
        img[y : y + face_px, x : x + face_px] = _face(seed * 7 + i, face_px)
    return img


def _enc(img: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **kw) -> bytes:
    pil = Image.fromarray(img)
    if mode:
        pil = pil.convert(mode)
    buf = io.BytesIO()
    pil.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _bad_crc_png() -> bytes:
    data = bytearray(_enc(_scene(3), "PNG"))
    i = data.index(b"IDAT") + 40
    data[i] ^= 0xFF
    return bytes(data)


def _bomb_png() -> bytes:
    """A PNG header claiming 30000 x 30000 pixels (900 M), with a tiny body."""
    import struct
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _png16(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img[:, :, ::-1].astype(np.uint16) * 257)
    assert ok
    return buf.tobytes()


def _exif_rotated(img: np.ndarray) -> bytes:
    stored = np.ascontiguousarray(np.rot90(img, 1))  # orientation 6 rotates it back (90° CW)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _enc(stored, "JPEG", exif=exif.tobytes(), quality=95)


def _exif_icc() -> bytes:
    """A JPEG with camera EXIF and an sRGB ICC profile (both must survive the transform)."""
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010F] = "BeardCam"  # Make
    exif[0x0110] = "Model 7"  # Model
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _enc(_scene(15, 1), "JPEG", exif=exif.tobytes(), icc_profile=icc, quality=95)


def _large() -> np.ndarray:
    img = np.empty((1200, 1600, 3), np.uint8)
    img[:] = (120, 140, 160)
    img[300:812, 500:1012] = _face(11, 512)
    return img


#: key -> (bytes factory, expected status, expected error reason or None)
CASES: dict[str, tuple] = {
    "plain.jpg": (lambda: _enc(_scene(1, 2)), "ok", None),
    "nested/deeper/two faces.jpg": (lambda: _enc(_scene(2, 2)), "ok", None),
    "ünïcødé/写真 1.png": (lambda: _enc(_scene(4, 1), "PNG"), "ok", None),
    "formats/gray.jpg": (lambda: _enc(_scene(5), "JPEG", "L"), "ok", None),
    "formats/rgba.png": (lambda: _enc(_scene(6), "PNG", "RGBA"), "ok", None),
    "formats/palette.png": (lambda: _enc(_scene(7), "PNG", "P"), "ok", None),
    "formats/cmyk.jpg": (lambda: _enc(_scene(8), "JPEG", "CMYK"), "ok", None),
    "formats/png16.png": (lambda: _png16(_scene(9)), "ok", None),
    "formats/exif6.jpg": (lambda: _exif_rotated(_scene(10)), "ok", None),
    "formats/exif icc.jpg": (_exif_icc, "ok", None),
    "sizes/large.jpg": (lambda: _enc(_large()), "ok", None),
    "sizes/crowd.jpg": (lambda: _enc(_scene(12, 6, w=384, h=256)), "ok", None),
    "sizes/tiny.png": (lambda: _enc(_scene(13)[::16, ::16].copy(), "PNG"), "no_face", None),
    "bad/no face.jpg": (lambda: _enc(np.full((200, 300, 3), 90, np.uint8)), "no_face", None),
    "bad/empty.jpg": (lambda: b"", "error", "empty"),
    "bad/truncated.jpg": (lambda: _enc(_scene(14))[:1500], "error", "truncated"),
    "bad/crc.png": (_bad_crc_png, "error", "bad_crc"),
    "bad/text.jpg": (lambda: b"this is not a photo\n" * 5, "error", "not_an_image"),
    "bad/bomb.png": (_bomb_png, "error", "too_large"),
}


def _model(s3, bucket: str) -> str:
    from beardnet.model import BeardNet, save_artifact

    uri = f"s3://{bucket}/models/random"
    save_artifact(BeardNet(), uri, {"note": "random init for tests"}, s3=s3.settings)
    return uri


def _cfg(inp: str, out: str, model: str, **job) -> TransformConfig:
    return TransformConfig.model_validate(
        {
            "job": {"input": inp, "output": out, "model": model, "lease_ttl_s": 30, **job},
            "ray": {"block_rows": 4, "read_batch_size": 2, "network_batch_size": 4,
                    "progress": "off"},
        }
    )


def _outputs(out: str, s3) -> list[str]:
    return sorted(k for k in storage.list_keys(out, s3=s3) if not k.startswith("_beardnet/"))


@pytest.fixture(scope="module")
def archive(s3, ray_session):
    """An input prefix with every case, a random model, and one finished run over it."""
    from beardnet.infer.job import run_transform

    bucket = f"tj-{os.getpid()}-{int(time.time())}"
    s3.create_bucket(bucket)
    st = s3.settings
    inp, out = f"s3://{bucket}/in/", f"s3://{bucket}/out/"
    for key, (make, _, _) in CASES.items():
        storage.write_bytes(inp + key, make(), s3=st)
    storage.write_bytes(inp + "notes.txt", b"not listed: wrong extension", s3=st)
    model = _model(s3, bucket)
    summary = run_transform(_cfg(inp, out, model), st)
    print("\nsummary:", json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return {"bucket": bucket, "in": inp, "out": out, "model": model, "summary": summary, "st": st}


@pytest.mark.slow
def test_every_key_one_row_and_statuses(archive) -> None:
    st = archive["st"]
    m = runlog.read_manifest(archive["out"], s3=st).to_pylist()
    keys = [r["key"] for r in m]
    assert sorted(keys) == sorted(CASES), "every input key exactly one row; notes.txt not listed"
    by_key = {r["key"]: r for r in m}
    for key, (_, status, reason) in CASES.items():
        r = by_key[key]
        assert r["status"] == status, (key, r["status"], r["error"])
        if reason:
            assert reason in (r["error"] or ""), (key, r["error"])
        else:
            assert r["error"] is None, (key, r["error"])
        assert r["run_id"] == archive["summary"]["run_id"]
        assert r["model"] == archive["summary"]["model"] and r["model"]
    assert by_key["sizes/crowd.jpg"]["faces"] >= 5
    assert by_key["plain.jpg"]["faces"] == 2
    assert 0 < by_key["plain.jpg"]["beard_area_ratio"] < 1
    assert by_key["plain.jpg"]["network_s"] > 0 and by_key["plain.jpg"]["read_s"] > 0


@pytest.mark.slow
def test_outputs_keep_keys_and_formats(archive) -> None:
    from beardnet.infer.codec import decode

    st = archive["st"]
    expected = sorted(k for k, (_, status, _) in CASES.items() if status in ("ok", "no_face"))
    assert _outputs(archive["out"], st) == expected
    for key in expected:
        src = storage.read_bytes(archive["in"] + key, s3=st)
        dst = storage.read_bytes(archive["out"] + key, s3=st)
        a, b = Image.open(io.BytesIO(src)), Image.open(io.BytesIO(dst))
        assert b.format == a.format, key
        da, db = decode(src), decode(dst)
        assert db.image.shape == da.image.shape, key  # EXIF orientation applied, size kept
        if CASES[key][1] == "no_face":
            assert dst == src, key  # copied through unchanged
    gray = Image.open(io.BytesIO(storage.read_bytes(archive["out"] + "formats/gray.jpg", s3=st)))
    assert gray.mode == "L"
    rgba = Image.open(io.BytesIO(storage.read_bytes(archive["out"] + "formats/rgba.png", s3=st)))
    assert rgba.mode == "RGBA"
    # PNG edits stay on the faces: the top-right quarter of this 1-face scene is untouched
    src = decode(storage.read_bytes(archive["in"] + "ünïcødé/写真 1.png", s3=st)).image
    dst = decode(storage.read_bytes(archive["out"] + "ünïcødé/写真 1.png", s3=st)).image
    assert np.array_equal(src[:, 128:], dst[:, 128:])
    rows = {r["key"]: r for r in runlog.read_manifest(archive["out"], s3=st).to_pylist()}
    # the face was found and pasted (this random network may change it by less than a level)
    assert rows["ünïcødé/写真 1.png"]["faces"] == 1 and rows["ünïcødé/写真 1.png"]["status"] == "ok"


@pytest.mark.slow
def test_outputs_carry_content_type_exif_and_icc(archive) -> None:
    st = archive["st"]
    client = storage.boto3_client(st)
    mime = {".jpg": "image/jpeg", ".png": "image/png"}
    for key in ("plain.jpg", "ünïcødé/写真 1.png", "bad/no face.jpg", "formats/rgba.png"):
        head = client.head_object(Bucket=archive["bucket"], Key="out/" + key)
        assert head["ContentType"] == mime[key[-4:]], key
    key = "formats/exif icc.jpg"
    src = Image.open(io.BytesIO(storage.read_bytes(archive["in"] + key, s3=st)))
    dst = Image.open(io.BytesIO(storage.read_bytes(archive["out"] + key, s3=st)))
    assert dst.info.get("icc_profile") == src.info.get("icc_profile") is not None
    assert dst.getexif().get(0x010F) == "BeardCam" and dst.getexif().get(0x0110) == "Model 7"


@pytest.mark.slow
def test_summary(archive) -> None:
    s = archive["summary"]
    on_store = runlog.read_summary(archive["out"], s["run_id"], s3=archive["st"])
    assert on_store["run_id"] == s["run_id"]
    n_ok = sum(1 for v in CASES.values() if v[1] == "ok")
    assert s["status"]["ok"] == n_ok
    assert s["status"]["error"] == sum(1 for v in CASES.values() if v[1] == "error")
    assert s["images"] == len(CASES) and s["keys_listed"] == len(CASES)
    assert s["faces"] >= n_ok and s["bytes_out"] > 0 and s["images_per_s"] > 0
    assert s["stage_s"]["network_s"] > 0
    assert abs(sum(s["stage_share"].values()) - 1) < 0.01
    # the actor was sized from the default share (no earlier run into this output): 2 CPUs x
    # 0.26, to the nearest quarter CPU
    assert s["sizing"] == {"network_share": 0.26, "share_from": "default",
                           "network_num_cpus": 0.5}
    assert "beardnet-test-secret" not in json.dumps(on_store)


@pytest.mark.slow
def test_incremental_writes_only_new_keys(archive) -> None:
    from beardnet.infer.job import run_transform

    st = archive["st"]
    client = storage.boto3_client(st)
    bucket = archive["bucket"]

    def mtimes() -> dict[str, object]:
        return {
            k: client.head_object(Bucket=bucket, Key="out/" + k)["LastModified"]
            for k in _outputs(archive["out"], st)
        }

    before = mtimes()
    storage.write_bytes(archive["in"] + "new/one.jpg", _enc(_scene(21, 1)), s3=st)
    storage.write_bytes(archive["in"] + "new/two.png", _enc(_scene(22, 2), "PNG"), s3=st)
    time.sleep(1.1)  # LastModified has one-second resolution
    s = run_transform(_cfg(archive["in"], archive["out"], archive["model"], incremental=True), st)
    assert s["images"] == 2 + sum(1 for v in CASES.values() if v[1] == "error")  # errors retried
    assert s["keys_skipped"] == sum(1 for v in CASES.values() if v[1] in ("ok", "no_face"))
    after = mtimes()
    assert set(after) == set(before) | {"new/one.jpg", "new/two.png"}
    assert all(after[k] == before[k] for k in before), "done outputs were rewritten"
    rows = runlog.read_manifest(archive["out"], s3=st).to_pylist()
    new_rows = [r for r in rows if r["run_id"] == s["run_id"]]
    assert {r["key"] for r in new_rows if r["status"] == "ok"} == {"new/one.jpg", "new/two.png"}


@pytest.mark.slow
def test_concurrent_run_is_refused(archive, capsys) -> None:
    from beardnet.infer import cli
    from beardnet.infer.job import EXIT_LEASE
    from beardnet.infer.lease import Lease

    st = archive["st"]
    holder = Lease(archive["out"], "someone-else", ttl_s=60, s3=st, settle_s=0)
    holder.acquire()
    try:
        args = _parse(["--input", archive["in"], "--output", archive["out"],
                       "--model", archive["model"], "--progress", "off"])
        code = cli.run(args)
        assert code == EXIT_LEASE != 0
        err = capsys.readouterr().err
        assert "busy" in err and "someone-else" in err
        assert holder.current().run_id == "someone-else"  # the refused run did not touch it
    finally:
        holder.release()


@pytest.mark.slow
def test_storage_errors_fail_before_work(archive) -> None:
    from beardnet.infer.job import EXIT_STORAGE, TransformFailed, run_transform

    st = archive["st"]
    with pytest.raises(TransformFailed, match="cannot read input") as e:
        run_transform(_cfg("s3://no-such-bucket-xyz/in/", archive["out"], archive["model"]), st)
    assert e.value.exit_code == EXIT_STORAGE
    with pytest.raises(TransformFailed, match="cannot write to output") as e:
        run_transform(_cfg(archive["in"], "s3://no-such-bucket-xyz/out/", archive["model"]), st)
    assert e.value.exit_code == EXIT_STORAGE
    assert not storage.exists("s3://no-such-bucket-xyz/", s3=st)


@pytest.mark.slow
def test_actor_pool_that_would_starve_readers_is_refused(archive) -> None:
    from beardnet.infer.job import EXIT_CONFIG, TransformFailed, run_transform

    cfg = _cfg(archive["in"], f"s3://{archive['bucket']}/starve/", archive["model"])
    cfg.ray.network_num_cpus = 2.0  # the test Ray has 2 CPUs
    with pytest.raises(TransformFailed, match="would hang") as e:
        run_transform(cfg, archive["st"])
    assert e.value.exit_code == EXIT_CONFIG
    assert _outputs(f"s3://{archive['bucket']}/starve/", archive["st"]) == []


def test_read_memory_over_every_node_is_named() -> None:
    from beardnet.infer.pipeline import check_memory

    r = TransformConfig.model_validate({"job": {"style": "none"}}).ray
    gb = 1024.0 ** 3
    assert check_memory({"a": 0.5 * gb, "b": 2 * gb}, r) is None  # the larger node holds 1 GB
    why = check_memory({"a": 0.5 * gb}, r)
    assert why is not None and "ray.read_memory_mb" in why and "512 MB" in why


def test_prepare_tasks_are_not_fused_into_the_network_actor(ray_session, capsys) -> None:
    """Network actors sized to read_num_cpus (0.5 and 0.5 on a 2-CPU node) must not take the
    prepare stage in: one actor would decode and locate every photo in turn."""
    from beardnet.infer.job import _transform_options
    from beardnet.infer.pipeline import build_pipeline
    from beardnet.infer.stages import work_schema

    cfg = _cfg("s3://b/in/", "s3://b/out/", "s3://b/model")
    assert cfg.ray.read_num_cpus == 0.5
    work = work_schema().empty_table()
    ds = build_pipeline(cfg, None, _transform_options(cfg, 128), [work], 0.5, 1)
    capsys.readouterr()
    ds.explain()
    plan = capsys.readouterr().out.split("Physical Plan (Optimized)")[-1]
    assert "TaskPoolMapOperator[MapBatches(prepare_batch)]" in plan
    assert "ActorPoolMapOperator[MapBatches(NetworkFn)]" in plan
    assert "prepare_batch)->MapBatches(NetworkFn" not in plan


@pytest.mark.slow
def test_read_memory_no_node_has_is_refused(archive) -> None:
    from beardnet.infer.job import EXIT_CONFIG, TransformFailed, run_transform

    cfg = _cfg(archive["in"], f"s3://{archive['bucket']}/nomem/", archive["model"])
    cfg.ray.read_memory_mb = 10_000_000  # 10 TB
    with pytest.raises(TransformFailed, match="ray.read_memory_mb") as e:
        run_transform(cfg, archive["st"])
    assert e.value.exit_code == EXIT_CONFIG
    assert _outputs(f"s3://{archive['bucket']}/nomem/", archive["st"]) == []


@pytest.mark.slow
def test_kill_and_rerun_completes(archive, s3) -> None:
    """A run killed half way, then re-run with --incremental: every key done exactly once."""
    import ray

    st = archive["st"]
    bucket = archive["bucket"]
    inp, out = f"s3://{bucket}/kin/", f"s3://{bucket}/kout/"
    keys = [f"k/{i:02d}.jpg" for i in range(8)]
    for i, k in enumerate(keys):
        storage.write_bytes(inp + k, _enc(_scene(30 + i, 1)), s3=st)
    env = {**os.environ, **st.to_env(), "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "PYTHONPATH": ROOT}
    argv = [sys.executable, "-m", "beardnet.cli", "transform", "--input", inp, "--output", out,
            "--model", archive["model"], "--incremental", "--lease-ttl", "8", "--progress", "off",
            "--block-rows", "2", "--read-batch-size", "1", "--network-batch-size", "2"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if runlog.read_manifest(out, s3=st).num_rows:
                break
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    done_first = set(runlog.done_keys(out, s3=st).to_pylist())
    assert done_first, "the first run wrote no manifest part before it was killed"
    # the killed run's lease blocks a rerun until it expires
    from beardnet.infer.job import EXIT_LEASE, TransformFailed, run_transform
    from beardnet.infer.lease import Lease

    rerun = _cfg(inp, out, archive["model"], incremental=True)
    left = Lease(out, "probe", s3=st).current()  # None if it already expired (a slow machine)
    if left is not None and left.expires_at > time.time() + 1.5:
        with pytest.raises(TransformFailed) as e:
            run_transform(rerun, st)
        assert e.value.exit_code == EXIT_LEASE
    if left is not None:
        time.sleep(max(0.0, left.expires_at - time.time()) + 0.5)
    summary = run_transform(rerun, st)  # in this process: its Ray workers are warm
    assert summary["keys_skipped"] == len(done_first)
    assert summary["images"] == len(keys) - len(done_first)
    rows = runlog.read_manifest(out, s3=st).to_pylist()
    done_rows = [x["key"] for x in rows if x["status"] in ("ok", "no_face")]
    assert sorted(done_rows) == sorted(keys), "each key done exactly once over both runs"
    assert _outputs(out, st) == sorted(keys)
    print(f"first run finished {len(done_first)}/{len(keys)} before the kill")


@pytest.mark.slow
def test_unsafe_keys_from_a_local_folder_are_rejected(archive, tmp_path) -> None:
    """S3 servers may normalise backslashes; a local folder keeps them: such keys are errors,
    never written, and the other photos still go through (local input, S3 output). Also: a
    style map, where an unknown style is that photo's error."""
    from beardnet.infer.job import run_transform

    st = archive["st"]
    src = tmp_path / "in"
    (src / "ok").mkdir(parents=True)
    (src / "ok" / "face.jpg").write_bytes(_enc(_scene(40, 1)))
    (src / "ok" / "styled.jpg").write_bytes(_enc(_scene(43, 1)))
    (src / "..\\..\\escape.jpg").write_bytes(_enc(_scene(41, 1)))
    (src / "win\\style.jpg").write_bytes(_enc(_scene(42, 1)))
    style_map = tmp_path / "styles.csv"
    style_map.write_text("key,style\nok/face.jpg,goatee\nok/styled.jpg,purple\n")
    out = f"s3://{archive['bucket']}/local-out/"
    s = run_transform(_cfg(str(src), out, archive["model"], style_map=str(style_map)), st)
    rows = {r["key"]: r for r in runlog.read_manifest(out, s3=st).to_pylist()}
    assert set(rows) == {"ok/face.jpg", "ok/styled.jpg", "..\\..\\escape.jpg", "win\\style.jpg"}
    assert rows["ok/face.jpg"]["status"] == "ok"
    assert rows["ok/face.jpg"]["style"] == "goatee"
    assert rows["ok/styled.jpg"]["status"] == "error" and "purple" in rows["ok/styled.jpg"]["error"]
    for k in ("..\\..\\escape.jpg", "win\\style.jpg"):
        assert rows[k]["status"] == "error" and "unsafe" in rows[k]["error"], rows[k]
        assert rows[k]["style"] == "full_beard"  # not in the map: the default style
    assert _outputs(out, st) == ["ok/face.jpg"]
    assert s["status"] == {"ok": 1, "error": 3}
    everything = list(storage.list_keys(f"s3://{archive['bucket']}/", s3=st))
    assert not any("escape" in k for k in everything)


@pytest.mark.slow
def test_no_lease_run_writes_photos_and_manifest(archive, tmp_path) -> None:
    """``--no-lease`` (a store without conditional writes): no lease object exists, and the
    run still writes its photos, manifest parts and summary (it once failed its first manifest
    part, which was compared with the missing lease object). Local folder in and out."""
    from beardnet.infer.job import run_transform

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "face.jpg").write_bytes(_enc(_scene(44, 1)))
    (src / "blank.jpg").write_bytes(_enc(np.full((200, 300, 3), 90, np.uint8)))
    s = run_transform(_cfg(str(src), f"file://{out}", archive["model"], no_lease=True),
                      archive["st"])
    assert s["status"] == {"ok": 1, "no_face": 1}
    rows = {r["key"]: r["status"] for r in runlog.read_manifest(f"file://{out}").to_pylist()}
    assert rows == {"face.jpg": "ok", "blank.jpg": "no_face"}
    assert (out / "face.jpg").stat().st_size > 0 and (out / "blank.jpg").exists()
    assert not list(out.glob("_beardnet/lease*"))  # no lease was taken


@pytest.mark.slow
def test_poison_photos_are_recorded_and_the_run_finishes(archive, monkeypatch) -> None:
    """One photo crashes the process decoding it, one hangs it (test-only hook), in one block
    with healthy photos: both recorded, the others written, exit 0; a second incremental run
    records them again without failing."""
    from beardnet.infer.job import run_transform
    from beardnet.infer.sandbox import POISON_ENV

    st = archive["st"]
    inp, out = f"s3://{archive['bucket']}/pin/", f"s3://{archive['bucket']}/pout/"
    keys = ["p/a.jpg", "p/CRASHME.jpg", "p/b.jpg", "p/HANGME.jpg", "p/c.jpg"]
    for i, k in enumerate(keys):
        storage.write_bytes(inp + k, _enc(_scene(50 + i, 1)), s3=st)
    monkeypatch.setenv(POISON_ENV, "crash=CRASHME,hang=HANGME")

    def run(incremental: bool) -> dict:
        cfg = _cfg(inp, out, archive["model"], incremental=incremental)
        cfg.ray.block_rows = 8  # all five photos in one block
        cfg.ray.read_batch_size = 8
        cfg.image.photo_timeout_s = 10
        return run_transform(cfg, st)

    s = run(False)
    rows = {r["key"]: r for r in runlog.read_manifest(out, s3=st).to_pylist()}
    assert set(rows) == set(keys)
    assert rows["p/CRASHME.jpg"]["status"] == "error"
    assert "worker_crash" in rows["p/CRASHME.jpg"]["error"]
    assert rows["p/HANGME.jpg"]["status"] == "error" and "timeout" in rows["p/HANGME.jpg"]["error"]
    healthy = ["p/a.jpg", "p/b.jpg", "p/c.jpg"]
    assert all(rows[k]["status"] == "ok" for k in healthy), rows
    assert _outputs(out, st) == sorted(healthy)
    assert s["error_reasons"] == {"worker_crash": 1, "timeout": 1} and s["status"]["ok"] == 3
    s2 = run(True)
    assert s2["images"] == 2 and s2["error_reasons"] == {"worker_crash": 1, "timeout": 1}
    again = [r for r in runlog.read_manifest(out, s3=st).to_pylist() if r["run_id"] == s2["run_id"]]
    assert sorted(r["key"] for r in again) == ["p/CRASHME.jpg", "p/HANGME.jpg"]


@pytest.mark.slow
def test_replaced_photo_and_new_model_are_processed_again(archive, s3) -> None:
    """Done-ness is (key, ETag, model, style): unchanged photos are skipped, a replaced photo
    and a new model are processed again; the state is one compacted object."""
    from beardnet.infer import state
    from beardnet.infer.job import run_transform

    st = archive["st"]
    inp, out = f"s3://{archive['bucket']}/rin/", f"s3://{archive['bucket']}/rout/"
    for i in range(3):
        storage.write_bytes(inp + f"r{i}.jpg", _enc(_scene(60 + i, 1)), s3=st)
    first = run_transform(_cfg(inp, out, archive["model"], incremental=True), st)
    assert first["images"] == 3 and storage.exists(state.state_uri(out), s3=st)
    same = run_transform(_cfg(inp, out, archive["model"], incremental=True), st)
    assert same["images"] == 0 and same["keys_skipped"] == 3
    storage.write_bytes(inp + "r1.jpg", _enc(_scene(99, 1)), s3=st)  # same key, new content
    replaced = run_transform(_cfg(inp, out, archive["model"], incremental=True), st)
    assert replaced["images"] == 1 and replaced["keys_skipped"] == 2
    rows = runlog.read_manifest(out, s3=st).to_pylist()
    assert [r["key"] for r in rows if r["run_id"] == replaced["run_id"]] == ["r1.jpg"]
    other = _model(s3, archive["bucket"] + "/m2")
    new_model = run_transform(_cfg(inp, out, other, incremental=True), st)
    assert new_model["images"] == 3 and new_model["model"] != first["model"]
    table, runs = state.read_state(out, s3=st)
    assert table.num_rows == 3 and set(table["model"].to_pylist()) == {new_model["model"]}
    assert new_model["run_id"] in runs


@pytest.mark.slow
def test_a_run_that_loses_its_lease_stops_writing_and_exits_76(archive) -> None:
    from beardnet.infer import fence
    from beardnet.infer.job import EXIT_LEASE_LOST, TransformFailed, run_transform
    from beardnet.infer.lease import LeaseInfo

    st = archive["st"]
    inp, out = f"s3://{archive['bucket']}/lin/", f"s3://{archive['bucket']}/lout/"
    for i in range(4):
        storage.write_bytes(inp + f"l{i}.jpg", _enc(_scene(70 + i, 1)), s3=st)
    ttl = 6.0
    stolen: dict[str, float] = {}

    def steal(lease) -> None:  # another run overwrites the lease object right after we got it
        now = time.time()
        thief = LeaseInfo("thief", "elsewhere", 1, now, now + 600)
        storage.write_bytes(lease.uri, thief.to_json(), s3=st)
        stolen["at"] = now

    with pytest.raises(TransformFailed) as e:
        run_transform(_cfg(inp, out, archive["model"], lease_ttl_s=ttl), st, on_lease=steal)
    assert e.value.exit_code == EXIT_LEASE_LOST == 76 and "lease" in str(e.value)
    client = storage.boto3_client(st)
    for key in _outputs(out, st):  # no photo write started later than ttl/3 after the loss
        mod = client.head_object(Bucket=archive["bucket"], Key="lout/" + key)["LastModified"]
        assert mod.timestamp() <= stolen["at"] + ttl / 3 + 1.0, key
    assert not [k for k in storage.list_keys(out, s3=st) if k.startswith("_beardnet/runs/")]
    assert fence.EXIT_LEASE_LOST == 76
