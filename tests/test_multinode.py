"""Multi-node truth: a Ray head plus a second node that has only what a worker node would have.

The second node is started by ``ray start --address`` under ``env -i``: ``PATH`` to the venv,
its own ``HOME``, ``TMPDIR``, working folder and Ray temp folder, the S3 endpoint/region and
the server's keys (as a Kubernetes Secret would inject them), the two test-harness switches
(``RAY_AUTH_MODE``, ``AWS_EC2_METADATA_DISABLED``) and a custom resource ``node2``. Where root
allows, it also runs in its own mount namespace in which the driver's folders (its working and
temp folders, pytest's temp folders, the head's Ray folder, the driver's ``HOME``) are empty
tmpfs mounts. Code reaches its workers as an image would have it: the venv's ``beardnet`` (an
editable install of the project here) with ``PYTHONPATH`` = the project root from the job's
``runtime_env``.

The driver runs in a subprocess (:mod:`multinode_driver`) in a folder of its own, because this
pytest process may already hold the session's local Ray. On this cluster: a 2-worker training
run (data, checkpoints, fail marker, batch records and model all on S3) whose workers need
``node2``, killed once and resumed; then a transform (input photos on S3 with a hostile key
and a corrupt photo, the trained model) whose network actors and tasks need ``node2``. The
workers report their node ids from inside the jobs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from beardnet import storage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
RAY = os.path.join(BIN, "ray")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_args(temp_dir: str, cpus: int) -> list[str]:
    """Flags every node of this cluster gets: its own ports (two nodes share one host)."""
    agent, grpc, rt_env, metrics = _free_ports(4)
    return [
        "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
        f"--object-store-memory={100 * 1024 * 1024}", "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={rt_env}", f"--metrics-export-port={metrics}",
    ]


def _wait_started(proc: subprocess.Popen, log: str, timeout: float = 120.0) -> None:
    """Until ``ray start --block`` says the node runs; its log if it dies first."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        if "Ray runtime started" in _tail(log, 100_000):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"second ray node did not start: {_tail(log)}")


def _tail(path: str, n: int = 3000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-n:]


def _wait_port(port: int, proc: subprocess.Popen, log: str, timeout: float = 120.0) -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"ray head exited: {_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"ray head not listening on {port}: {_tail(log)}")


def _can_unshare_mounts() -> bool:
    try:
        done = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
        return done.returncode == 0
    except OSError:
        return False


def _stop(procs: list[subprocess.Popen], base: str) -> None:
    """End exactly what this fixture started: its process groups, then any process still
    naming this cluster's private folder (Ray workers) by pid."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    for pid in (int(x) for x in os.listdir("/proc") if x.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if base.encode() in f.read():
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _driver_home_dirs() -> list[str]:
    """The driver's ``HOME`` to hide on node2, or, where the interpreter or the project lives
    under it (e.g. a pyenv Python), every other folder in it (``.aws``, ``.config``, default
    run folders, ...)."""
    home = os.path.realpath(os.path.expanduser("~"))
    needed = [os.path.realpath(p) for p in (sys.executable, ROOT, BIN)]
    if not any(p.startswith(home + os.sep) for p in needed):
        return [home]
    out = []
    for name in sorted(os.listdir(home)):
        path = os.path.join(home, name)
        if os.path.isdir(path) and not os.path.islink(path) and not any(
            p == path or p.startswith(path + os.sep) for p in needed
        ):
            out.append(path)
    return out


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory) -> Iterator[dict]:
    """A head (1 CPU) and a clean second node (2 CPUs, resource ``node2``) on one host."""
    base = tempfile.mkdtemp(prefix="bnmn-", dir="/tmp")  # short: Ray's socket paths
    dirs = {n: os.path.join(base, n) for n in ("head", "drv", "n2")}
    for d in ("head", "drv/tmp", "n2/home", "n2/tmp", "n2/work", "n2/ray"):
        os.makedirs(os.path.join(base, d))
    (gcs,) = _free_ports(1)
    procs: list[subprocess.Popen] = []
    head_log = os.path.join(base, "head.log")
    try:
        with open(head_log, "wb") as log:
            procs.append(subprocess.Popen(
                [RAY, "start", "--head", f"--port={gcs}", "--include-dashboard=false",
                 f"--ray-client-server-port={_free_ports(1)[0]}",
                 *_node_args(os.path.join(dirs["head"], "ray"), 1)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=dirs["head"]))
        _wait_port(gcs, procs[0], head_log)

        st = s3.settings
        n2 = dirs["n2"]
        env = {
            "PATH": f"{BIN}:/usr/bin:/bin",
            "HOME": f"{n2}/home",
            "TMPDIR": f"{n2}/tmp",
            "AWS_ENDPOINT_URL": st.endpoint_url,
            "AWS_REGION": st.region,
            "AWS_ACCESS_KEY_ID": st.access_key_id,  # as a Secret would inject them
            "AWS_SECRET_ACCESS_KEY": st.secret_access_key,
            "RAY_AUTH_MODE": "disabled",  # test-harness switches, as infra/loopback.sh sets
            "AWS_EC2_METADATA_DISABLED": "true",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        cmd = [RAY, "start", f"--address=127.0.0.1:{gcs}", '--resources={"node2": 4}',
               *_node_args(f"{n2}/ray", 2)]
        hidden: list[str] = []
        if _can_unshare_mounts():
            hidden = [dirs["head"], dirs["drv"], str(tmp_path_factory.getbasetemp()),
                      *_driver_home_dirs()]
            mounts = " && ".join(f"mount -t tmpfs -o size=1m bnmn {shlex.quote(h)}"
                                 for h in hidden)
            cmd = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
        n2_log = os.path.join(base, "n2.log")
        with open(n2_log, "wb") as log:
            procs.append(subprocess.Popen(
                ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=f"{n2}/work"))
        _wait_started(procs[1], n2_log)
        yield {"address": f"127.0.0.1:{gcs}", "base": base, "dirs": dirs, "hidden": hidden,
               "logs": (head_log, n2_log), "procs": procs}
    finally:
        _stop(procs, base)
        shutil.rmtree(base, ignore_errors=True)


def _photos(s3, inp: str) -> dict[str, tuple[str, str | None]]:
    """Input photos on S3: key -> (expected status, expected error reason)."""
    from test_transform_job import _enc, _scene

    cases = {
        "faces/plain.jpg": (_enc(_scene(1, 2)), "ok", None),
        "faces/a%20b two.jpg": (_enc(_scene(2, 2)), "ok", None),  # written byte-for-byte
        "%2e%2e/up.jpg": (_enc(_scene(3, 1)), "error", "unsafe"),  # hostile: refused
        "bad/truncated.jpg": (_enc(_scene(14))[:1500], "error", "truncated"),  # corrupt
    }
    for key, (data, _, _) in cases.items():
        storage.write_bytes(inp + key, data, s3=s3.settings)
    return {k: (status, why) for k, (_, status, why) in cases.items()}


@pytest.mark.slow
def test_train_and_transform_on_a_clean_second_node(cluster, s3, bucket) -> None:
    """2 workers on node2 with data and checkpoints on S3; rank 1 dies once at step 3, Ray
    Train restarts the workers, which resume from the step-2 checkpoint (not step 0) and finish;
    the model artifact on S3 loads back. Each rank records, from inside the real job, the batch
    it trained at every step and its node: every batch has the exact composition, the ranks are
    disjoint in the epoch, the restarted workers continue at the identical batch stream, and
    every record comes from node2. Then the transform with its actors and tasks on node2: every
    key has its manifest row and status, outputs exist, the network ran on node2."""
    import torch
    from test_train_job import render_crops, train_sets

    from beardnet.config import load_config
    from beardnet.infer import runlog
    from beardnet.model import load
    from beardnet.train.config import TrainConfig
    from beardnet.train.data import build_sampler, build_training_set

    st = s3.settings
    data = render_crops(f"s3://{bucket}/crops", 9, s3=st)  # 8 train identities
    marker = f"s3://{bucket}/fail/failed-once"
    record = f"s3://{bucket}/batches"
    sets = train_sets(data, f"s3://{bucket}/runs", "kill", [
        "train.fail_at_step=3", f"train.fail_marker={marker}", f"train.record_batches={record}",
        "scaling.resources_per_worker={node2: 1}",
    ])
    inp, out = f"s3://{bucket}/in/", f"s3://{bucket}/out/"
    expected = _photos(s3, inp)
    spec = {
        "train_sets": sets,
        "transform": {
            "job": {"input": inp, "output": out, "lease_ttl_s": 30},
            "ray": {"block_rows": 2, "read_batch_size": 2, "network_batch_size": 4,
                    "progress": "off", "network_resources": {"node2": 1},
                    "task_resources": {"node2": 0.5}},
        },
    }
    drv = cluster["dirs"]["drv"]
    with open(os.path.join(drv, "spec.json"), "w") as f:
        json.dump(spec, f)
    env = {**os.environ, "RAY_ADDRESS": cluster["address"], "PYTHONPATH": ROOT,
           "TMPDIR": os.path.join(drv, "tmp"), "MULTINODE_WAIT_FOR": "node2"}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multinode_driver.py"),
                        "spec.json"], cwd=drv, env=env, capture_output=True, text=True,
                       timeout=540, check=False)
    logs = "".join(_tail(p, 2000) for p in cluster["logs"])
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}\n{logs}"
    got = json.loads(r.stdout.strip().splitlines()[-1])
    node2 = [n for n, res in got["nodes"].items() if res.get("node2")]
    assert len(node2) == 1 and len(got["nodes"]) == 2, got["nodes"]
    node2 = node2[0]
    assert got["driver_node"] != node2  # the driver sits on the head

    # training: killed once, resumed from the checkpoint, finished and exported on S3
    train = got["train"]
    assert train["ok"], train["error"]
    assert storage.exists(marker, s3=st), "the worker was not killed"
    m = train["metrics"]
    assert m["step"] == 4  # 8 global batches / 2 ranks
    assert m["start_step"] == 2, "did not resume from the step-2 checkpoint"
    assert m["world_size"] == 2
    keys = list(storage.list_keys(f"s3://{bucket}/runs/kill/", s3=st))
    assert any(k.startswith("checkpoint_00000004/") and k.endswith("state.pt") for k in keys), keys
    lm = load(train["model_uri"], s3=st)
    assert lm.input_size == 64 and lm.meta["training"]["steps"] == 4
    assert lm.meta["training"]["world_size"] == 2
    x = torch.rand(2, 3, 64, 64)
    y, mask = lm.net(x, torch.tensor([0, 3]))
    assert y.shape == x.shape and mask.shape == (2, 1, 64, 64)

    # per-rank truth, recorded inside the job
    cfg = load_config(TrainConfig, None, sets)
    recs: dict[tuple[int, int], list[dict]] = {}
    for k in storage.list_keys(record + "/", s3=st):
        rec = json.loads(storage.read_bytes(storage.join(record, k), s3=st))
        rec["pid"] = k.rsplit(".", 2)[-2]
        recs.setdefault((rec["rank"], rec["step"]), []).append(rec)
    assert {a["node_id"] for v in recs.values() for a in v} == {node2}, "a rank ran off node2"
    ds, _ = build_training_set(cfg, st)
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for rank in (0, 1):
        plan = build_sampler(cfg, ds, rank, 2).plan_epoch(0)
        for step in (1, 2, 3, 4):
            attempts = recs.get((rank, step))
            assert attempts, f"rank {rank} recorded no batch for step {step}"
            for a in attempts:  # every attempt at a step (before and after the kill) agrees
                assert a["index"] == plan[step - 1].tolist(), (rank, step, a)
                assert sorted(a["style"]) == [0, 1, 2, 3, 4]  # one of each style
                assert a["epoch"] == 0
            seen[rank].update(attempts[0]["index"])
        pids = {a["pid"] for st_ in (1, 2, 3, 4) for a in recs[(rank, st_)]}
        assert len(pids) >= 2, f"rank {rank}: no restarted worker recorded a batch"
    assert not seen[0] & seen[1], "ranks shared rows within the epoch"

    # transform: every key recorded with its status; outputs byte-for-byte keys; network on node2
    summary = got["transform"]
    assert summary["complete"], summary
    rows = {row["key"]: row for row in runlog.read_manifest(out, s3=st).to_pylist()}
    assert set(rows) == set(expected)
    for key, (status, why) in expected.items():
        assert rows[key]["status"] == status, rows[key]
        if why:
            assert why in (rows[key]["error"] or ""), rows[key]
    ok = sorted(k for k, (status, _) in expected.items() if status == "ok")
    written = sorted(k for k in storage.list_keys(out, s3=st) if not k.startswith("_beardnet/"))
    assert written == ok
    assert {rows[k]["network_node"] for k in ok} == {node2}
    assert all(rows[k]["faces"] >= 1 for k in ok)


def test_placement_fields_fail_fast_naming_the_field() -> None:
    """Custom-resource fields: built-in names, empty names and amounts <= 0 are refused at load
    time, and a resource the cluster lacks is refused before any work starts, each naming its
    field."""
    from beardnet.config import ConfigError, load_config
    from beardnet.infer.config import TransformConfig
    from beardnet.infer.job import TransformFailed, _check_resources
    from beardnet.train.config import TrainConfig
    from beardnet.train.job import check_resources

    for bad, why in (("{CPU: 1}", "not a custom resource"), ("{node2: 0}", "must be > 0"),
                     ("{'': 1}", "must not be empty")):
        with pytest.raises(ConfigError, match=rf"scaling.resources_per_worker.*{why}"):
            load_config(TrainConfig, None, [f"scaling.resources_per_worker={bad}"])
        for field in ("network_resources", "task_resources"):
            with pytest.raises(ConfigError, match=rf"ray.{field}.*{why}"):
                load_config(TransformConfig, None, [f"ray.{field}={bad}"])
    train = load_config(TrainConfig, None, ["scaling.num_workers=2",
                                            "scaling.resources_per_worker={node2: 1}"])
    check_resources(train, {"CPU": 3.0, "node2": 2.0})
    with pytest.raises(ValueError, match=r"scaling.resources_per_worker: node2=1 x 2 .* has 1"):
        check_resources(train, {"CPU": 3.0, "node2": 1.0})
    tcfg = load_config(TransformConfig, None, ["ray.network_actors=2",
                                               "ray.network_resources={gpu_node: 1}",
                                               "ray.task_resources={node2: 0.5}"])
    _check_resources({"gpu_node": 2.0, "node2": 1.0}, tcfg.ray)
    with pytest.raises(TransformFailed, match=r"ray.network_resources: gpu_node=1 x 2"):
        _check_resources({"gpu_node": 1.0, "node2": 1.0}, tcfg.ray)
    with pytest.raises(TransformFailed, match=r"ray.task_resources: node2=0.5"):
        _check_resources({"gpu_node": 2.0}, tcfg.ray)
