"""The transform job through Ray's Job Submission API, as on any existing Ray cluster.

A separate Ray head (its own ports and temp dir, dashboard on 127.0.0.1) is started with
``ray start --head --block``; the job goes in with the documented command line::

    ray job submit --address http://127.0.0.1:<dashboard> --working-dir . \
        --runtime-env-json '{"env_vars": {...S3...}, "excludes": [...]}' \
        -- python jobs/transform.py --input s3://... --output s3://... --incremental ...

and the test reads what a monitor reads: the run summary JSON and the manifest in the bucket.
Cron semantics checked end to end: a second scheduled (incremental) run processes only the new
key; a run that finds the output's lease held by another live run refuses with exit code 75 and
the Ray job is FAILED. The head is stopped by the process ids this test started (never
``ray stop``, which would stop every Ray on the machine).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: dashboard modules `ray start --include-dashboard=true` needs (the ray[default] extra)
DASHBOARD_DEPS = ("aiohttp", "aiohttp_cors", "grpc", "prometheus_client", "opencensus")
EXCLUDES = [".git", ".venv", "tests", "infra", "bench", "*.egg-info", "__pycache__"]


def _missing_dashboard_deps() -> list[str]:
    import importlib.util

    return [m for m in DASHBOARD_DEPS if importlib.util.find_spec(m) is None]


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _stop_head(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM the head we started and every process it spawned (by pid), then SIGKILL."""
    pids = [proc.pid, *_descendants(proc.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in reversed(pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + (timeout_s if sig == signal.SIGTERM else 5.0)
        while time.time() < deadline and any(_alive(p) for p in pids):
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        if not any(_alive(p) for p in pids):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def ray_head(s3) -> Iterator[str]:
    """A Ray head with the Job Submission API; yields the dashboard address."""
    missing = _missing_dashboard_deps()
    if missing:
        pytest.skip(f"the Ray dashboard needs ray[default] (missing {missing}); "
                    "install the project's dev extra")
    gcs, dash, client, agent = _free_ports(4)
    tmp = tempfile.mkdtemp(prefix="bnray", dir="/tmp")  # short: Unix socket paths are short
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `python` in an entrypoint = this venv
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.pop("RAY_ADDRESS", None)
    log_path = os.path.join(tmp, "head.log")
    log = open(log_path, "w")  # noqa: SIM115 - open for the head's whole life
    proc = subprocess.Popen(
        [
            str(BIN / "ray"), "start", "--head", "--block",
            f"--port={gcs}", "--node-ip-address=127.0.0.1",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
            f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
            "--num-cpus=2", "--object-store-memory=300000000",
            f"--temp-dir={tmp}", "--disable-usage-stats",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"ray start exited {proc.returncode}:\n"
                                     + Path(log_path).read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError("Ray dashboard did not come up in 90 s:\n"
                                     + Path(log_path).read_text()[-3000:])
            time.sleep(0.5)
        yield address
    finally:
        _stop_head(proc)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _photo(seed: int, face: bool) -> bytes:
    """A small JPEG: a synthetic face padded into a photo, or a plain gradient."""
    import numpy as np
    from PIL import Image

    if face:
        from beardnet.synth.check import pad_crop
        from beardnet.synth.render import render_crop

        img = pad_crop(render_crop(seed, "none", size=160).image, 256)
    else:
        y, x = np.mgrid[0:200, 0:300]
        img = np.stack([x % 256, y % 256, (x + y + seed) % 256], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _submit(address: str, s3, args: list[str], timeout_s: float = 240) -> subprocess.CompletedProcess:
    st = s3.settings
    runtime_env = {
        "env_vars": {
            "AWS_ENDPOINT_URL": st.endpoint_url or "",
            "AWS_ACCESS_KEY_ID": st.access_key_id or "",
            "AWS_SECRET_ACCESS_KEY": st.secret_access_key or "",
            "AWS_REGION": st.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "RAY_AUTH_MODE": "disabled",
            "CI": "1",
        },
        "excludes": EXCLUDES,
    }
    cmd = [
        str(BIN / "ray"), "job", "submit", "--address", address,
        "--working-dir", ".", "--runtime-env-json", json.dumps(runtime_env),
        "--", "python", "jobs/transform.py", *args,
    ]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def _job(address: str, out: str) -> tuple[str, str]:
    """(status, message) of the last job whose entrypoint names ``out``, from the Job API."""
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(address).list_jobs()
    mine = [j for j in jobs if out in (j.entrypoint or "")]
    assert mine, f"no job with {out} in its entrypoint"
    last = max(mine, key=lambda j: j.start_time or 0)
    return str(last.status).rsplit(".", 1)[-1], last.message or ""


def _summaries(out: str, s3) -> list[dict]:
    from beardnet import storage

    base = out.rstrip("/") + "/_beardnet/runs"
    keys = sorted(k for k in storage.list_keys(base, s3=s3.settings) if k.endswith(".json"))
    return [json.loads(storage.read_bytes(f"{base}/{k}", s3=s3.settings)) for k in keys]


def test_transform_via_ray_job_submit(s3, bucket, ray_head) -> None:
    import torch

    from beardnet import storage
    from beardnet.infer import runlog
    from beardnet.infer.lease import Lease
    from beardnet.model import BeardNet, save_artifact

    st = s3.settings
    inp, out, model = f"s3://{bucket}/in/", f"s3://{bucket}/out/", f"s3://{bucket}/model/"
    torch.manual_seed(0)
    save_artifact(BeardNet(base=8, size=64).eval(), model, {"input_size": 64}, s3=st)
    photos = {
        "2024/a b/face 1.jpg": _photo(1, True),
        "2024/ünï/face 2.jpg": _photo(2, True),
        "2024/plain.jpg": _photo(3, False),
    }
    for key, data in photos.items():
        storage.write_bytes(inp + key, data, s3=st)
    args = [
        "--input", inp, "--output", out, "--model", model, "--style", "full_beard",
        "--incremental", "--progress", "off", "--block-rows", "2", "--read-batch-size", "2",
        "--network-actors", "1", "--network-cpus", "1", "--read-cpus", "0.5",
    ]

    # 1) the first scheduled run: every key
    t0 = time.time()
    r = _submit(ray_head, s3, args)
    first_s = time.time() - t0
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert _job(ray_head, out)[0] == "SUCCEEDED"
    [summary] = _summaries(out, s3)
    assert summary["images"] == 3 and summary["keys_skipped"] == 0
    assert summary["complete"] is True and summary["errors"] == 0
    assert summary["status"].get("ok", 0) + summary["status"].get("no_face", 0) == 3
    for key in photos:
        assert storage.exists(out + key, s3=st), f"{key} was not written under the same key"
    manifest = runlog.read_manifest(out, s3=st)
    assert sorted(manifest["key"].to_pylist()) == sorted(photos)
    assert not storage.exists(out + "_beardnet/lease.json", s3=st), "lease not released"

    # 2) the next night: one new photo; an incremental run does only that one
    storage.write_bytes(inp + "2025/new.jpg", _photo(4, True), s3=st)
    r = _submit(ray_head, s3, args)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    second = [s for s in _summaries(out, s3) if s["run_id"] != summary["run_id"]]
    assert len(second) == 1
    assert second[0]["images"] == 1 and second[0]["keys_skipped"] == 3, second[0]
    keys = runlog.read_manifest(out, s3=st)["key"].to_pylist()
    assert sorted(keys) == sorted([*photos, "2025/new.jpg"]), "one manifest row per key"

    # 3) an overlapping run: another live run holds the lease -> refuse, exit code 75, FAILED
    other = Lease(out, "other-run", ttl_s=300, s3=st, settle_s=0)
    other.acquire()
    try:
        r = _submit(ray_head, s3, args)
    finally:
        other.release()
    assert r.returncode != 0, "a refused run must not look successful"
    status, message = _job(ray_head, out)
    assert status == "FAILED" and "exit code 75" in message, (status, message)
    logs = r.stdout + r.stderr
    assert "output is busy" in logs and "other-run" in logs, logs[-3000:]
    assert len(_summaries(out, s3)) == 2, "a refused run writes no summary"
    print(f"first run via ray job submit: {first_s:.1f}s")
