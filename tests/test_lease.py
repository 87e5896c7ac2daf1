"""The output lease: conditional writes, one holder, a growing fencing token, a bounded loss."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beardnet import storage
from beardnet.infer.lease import (
    EXIT_LEASE_LOST,
    Lease,
    LeaseHeld,
    LeaseInfo,
    LeaseLost,
    probe_conditional_writes,
)

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(Path(__file__).with_name("lease_worker.py"))


def test_acquire_refuse_release(tmp_path) -> None:
    out = str(tmp_path / "out")
    a = Lease(out, "run-a", ttl_s=60)
    info = a.acquire()
    assert info.run_id == "run-a" and info.expires_at > time.time() + 50 and a.token > 0
    cur = json.loads(storage.read_bytes(a.uri))
    assert cur["run_id"] == "run-a" and cur["token"] == a.token
    b = Lease(out, "run-b", ttl_s=60)
    with pytest.raises(LeaseHeld, match="run-a"):
        b.acquire()
    a.release()
    assert not storage.exists(a.uri)
    b.acquire()
    assert b.current().run_id == "run-b" and b.token > a.token
    a.release()  # releasing a lease that is someone else's now does nothing
    assert b.current().run_id == "run-b"
    b.release()


def test_expired_lease_is_taken_over_and_old_owner_learns(tmp_path) -> None:
    out = str(tmp_path / "out")
    a = Lease(out, "run-a", ttl_s=0.2)
    a.acquire()
    time.sleep(0.3)
    b = Lease(out, "run-b", ttl_s=60)
    b.acquire()
    assert b.token > a.token
    with pytest.raises(LeaseLost):
        a.renew()
    assert a.lost and "run-b" in a.lost
    with pytest.raises(LeaseLost):
        a.check()
    a.release()  # lost: leaves b's lease alone
    assert b.current().run_id == "run-b"


def test_check_passes_until_valid_until_then_loses(tmp_path) -> None:
    a = Lease(str(tmp_path / "out"), "run-a", ttl_s=30)
    before = time.time()
    a.acquire()
    until = a.valid_until()
    assert before + 10 <= until <= time.time() + 10  # sent time + ttl/3
    a.check(now=until)
    a.renew()
    assert a.valid_until() >= until
    with pytest.raises(LeaseLost, match="not renewed"):
        a.check(now=a.valid_until() + 0.001)
    assert a.valid_until() <= time.time()  # once lost, nothing more may start
    with pytest.raises(LeaseLost):
        a.renew()


def test_renewer_moves_expiry(tmp_path) -> None:
    out = str(tmp_path / "out")
    with Lease(out, "run-a", ttl_s=0.6) as a:
        first = a.current().expires_at
        deadline = time.time() + 30
        while a.current().expires_at == first and time.time() < deadline:
            time.sleep(0.05)  # the renewer runs every ttl/6 = 0.1 s
        assert a.current().expires_at > first
    assert a.current() is None


def test_garbage_lease_is_taken_over(tmp_path) -> None:
    out = str(tmp_path / "out")
    a = Lease(out, "run-a", ttl_s=60)
    storage.write_bytes(a.uri, b"not json")
    assert a.current() is None
    a.acquire()
    assert LeaseInfo.from_json(storage.read_bytes(a.uri)).run_id == "run-a"


def test_no_lease_writes_nothing(tmp_path) -> None:
    a = Lease(str(tmp_path / "out"), "run-a", no_lease=True)
    a.acquire()
    a.start_renewing()
    a.check()
    assert a.valid_until() == math.inf and a.token == 0
    assert not storage.exists(a.uri)
    a.release()


def test_store_enforces_conditional_writes(s3, bucket) -> None:
    support = probe_conditional_writes(f"s3://{bucket}/out/", s3.settings)
    assert support.conditional_put and support.conditional_delete, support
    assert list(storage.list_keys(f"s3://{bucket}/out/", s3=s3.settings)) == []


def test_lease_on_s3_and_free_marker(s3, bucket) -> None:
    out = f"s3://{bucket}/out/"
    a = Lease(out, "run-a", ttl_s=60, s3=s3.settings)
    a.acquire()
    assert a.uri == f"s3://{bucket}/out/_beardnet/lease.json"
    b = Lease(out, "run-b", ttl_s=60, s3=s3.settings)
    with pytest.raises(LeaseHeld, match="output is busy: run run-a"):
        b.acquire()
    a.release()
    assert not storage.exists(a.uri, s3=s3.settings)
    b.acquire()
    b._delete_ok = False  # as on a store without conditional delete: release marks it free
    b.release()
    left = b.current()
    assert left is not None and left.free and left.token == b.token
    c = Lease(out, "run-c", ttl_s=60, s3=s3.settings)
    c.acquire()
    assert c.token > b.token > a.token
    c.release()


def test_twenty_pairs_of_processes_one_holder_each(s3, bucket) -> None:
    """Two processes race for 20 fresh leases, each round at the same wall-clock instant."""
    rounds, spacing = 20, 0.6
    start = time.time() + 4.0  # time for both interpreters to start and import
    base = f"s3://{bucket}/race"
    procs = [
        subprocess.Popen([sys.executable, WORKER, "race", base, str(rounds), str(start),
                          str(spacing), f"racer-{n}"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for n in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [[json.loads(line) for line in o[0].splitlines()] for o in outs]
    assert all(len(r) == rounds for r in results)
    for i in range(rounds):
        held = [r[i]["held"] for r in results]
        assert sum(held) == 1, (i, results[0][i], results[1][i])
        winner = results[held.index(True)][i]
        holder = Lease(f"{base}/{i}/", "probe").current()
        assert holder is not None and holder.token == winner["token"]


@pytest.mark.parametrize("how", ["stolen", "paused"])
def test_lost_lease_stops_writes_within_the_bound(s3, bucket, tmp_path, how) -> None:
    """A holder whose lease is stolen (forced overwrite) or who stalls past its expiry (SIGSTOP,
    then another run takes over) starts no write later than ttl/3 after the loss and exits
    with EXIT_LEASE_LOST."""
    ttl = 3.0
    out = f"s3://{bucket}/held-{how}/"
    result = tmp_path / "result.json"
    proc = subprocess.Popen([sys.executable, WORKER, "hold", out, str(ttl), "holder",
                             str(result)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        time.sleep(1.0)
        lease_uri = out + "_beardnet/lease.json"
        if how == "stolen":
            lost_at = time.time()
            thief = LeaseInfo("thief", "elsewhere", 1, lost_at, lost_at + 60, token=1)
            storage.write_bytes(lease_uri, thief.to_json())
        else:
            os.kill(proc.pid, signal.SIGSTOP)
            lost_at = Lease(out, "probe").current().expires_at
            time.sleep(max(0.0, lost_at - time.time()) + 0.2)
            taker = Lease(out, "taker", ttl_s=60)
            taker.acquire()
            os.kill(proc.pid, signal.SIGCONT)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == EXIT_LEASE_LOST
    got = json.loads(result.read_text())
    assert got["writes"] and min(got["writes"]) < lost_at
    assert max(got["writes"]) <= lost_at + ttl / 3, (max(got["writes"]) - lost_at, got["lost"])
    if how == "stolen":
        assert "thief" in got["lost"]


def test_token_grows_across_release_and_recreate_in_the_same_instant(tmp_path) -> None:
    """A released lease is deleted; re-creating it at once must still give a larger token
    (a millisecond clock used to hand out the same one)."""
    out = str(tmp_path / "out")
    tokens = []
    for i in range(50):
        lease = Lease(out, f"run-{i}", ttl_s=60)
        lease.acquire()
        tokens.append(lease.token)
        lease.release()
    assert all(b > a for a, b in itertools.pairwise(tokens))
