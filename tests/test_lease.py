"""The output lease: one live run per output; expired leases are taken over."""

from __future__ import annotations

import json
import time

import pytest

from beardnet import storage
from beardnet.infer.lease import Lease, LeaseHeld, LeaseInfo, LeaseLost


def test_acquire_refuse_release(tmp_path) -> None:
    out = str(tmp_path / "out")
    a = Lease(out, "run-a", ttl_s=60, settle_s=0)
    info = a.acquire()
    assert info.run_id == "run-a" and info.expires_at > time.time() + 50
    cur = json.loads(storage.read_bytes(a.uri))
    assert cur["run_id"] == "run-a"
    b = Lease(out, "run-b", ttl_s=60, settle_s=0)
    with pytest.raises(LeaseHeld, match="run-a"):
        b.acquire()
    a.release()
    assert not storage.exists(a.uri)
    b.acquire()
    assert b.current().run_id == "run-b"
    # releasing someone else's lease does nothing
    a.release()
    assert b.current().run_id == "run-b"
    b.release()


def test_expired_lease_is_taken_over_and_old_owner_learns(tmp_path) -> None:
    out = str(tmp_path / "out")
    a = Lease(out, "run-a", ttl_s=0.2, settle_s=0)
    a.acquire()
    time.sleep(0.3)
    b = Lease(out, "run-b", ttl_s=60, settle_s=0)
    b.acquire()
    with pytest.raises(LeaseLost):
        a.renew()
    assert a.lost and "run-b" in a.lost


def test_renewal_moves_expiry(tmp_path) -> None:
    out = str(tmp_path / "out")
    with Lease(out, "run-a", ttl_s=0.6, settle_s=0) as a:
        first = a.current().expires_at
        time.sleep(0.5)  # renewer runs every 0.2 s
        assert a.current().expires_at > first
        assert a.current().expires_at > time.time()
    assert a.current() is None


def test_garbage_lease_is_free(tmp_path) -> None:
    out = str(tmp_path / "out")
    a = Lease(out, "run-a", ttl_s=60, settle_s=0)
    storage.write_bytes(a.uri, b"not json")
    assert a.current() is None
    a.acquire()
    assert LeaseInfo.from_json(storage.read_bytes(a.uri)).run_id == "run-a"


def test_lease_race_loser_backs_off(tmp_path) -> None:
    """Write-then-verify: if another run overwrites during the settle time, we back off."""
    out = str(tmp_path / "out")
    a = Lease(out, "run-a", ttl_s=60, settle_s=0.3)
    b = Lease(out, "run-b", ttl_s=60, settle_s=0)

    import threading

    def later() -> None:
        time.sleep(0.1)
        b._write()

    t = threading.Thread(target=later)
    t.start()
    with pytest.raises(LeaseHeld, match="run-b"):
        a.acquire()
    t.join()


def test_lease_on_s3(s3, bucket) -> None:
    out = f"s3://{bucket}/out/"
    a = Lease(out, "run-a", ttl_s=60, s3=s3.settings, settle_s=0.05)
    a.acquire()
    assert a.uri == f"s3://{bucket}/out/_beardnet/lease.json"
    b = Lease(out, "run-b", ttl_s=60, s3=s3.settings, settle_s=0.05)
    with pytest.raises(LeaseHeld, match="output is busy: run run-a"):
        b.acquire()
    a.release()
    assert not storage.exists(a.uri, s3=s3.settings)
    b.acquire()
    b.release()
