"""A separate process for the lease tests (no Ray): ``race`` and ``hold`` (see test_lease.py)."""

from __future__ import annotations

import json
import sys
import time

from beardnet import storage
from beardnet.infer.lease import (
    EXIT_LEASE_LOST,
    Lease,
    LeaseHeld,
    LeaseLost,
    probe_conditional_writes,
)


def race(base: str, rounds: int, start_at: float, spacing: float, run_id: str) -> None:
    """Round i: at wall-clock ``start_at + i * spacing`` try to take the lease of ``base/i``."""
    probe_conditional_writes(base + "/")  # once per bucket, before the race
    for i in range(rounds):
        lease = Lease(f"{base}/{i}/", f"{run_id}", ttl_s=60)
        time.sleep(max(0.0, start_at + i * spacing - time.time()))
        try:
            lease.acquire()
            out = {"round": i, "held": True, "token": lease.token}
        except LeaseHeld as e:
            out = {"round": i, "held": False, "why": str(e)}
        print(json.dumps(out), flush=True)


def hold(out: str, ttl: float, run_id: str, result: str) -> None:
    """Hold the lease and 'write photos' (after :meth:`Lease.check`) until it is lost."""
    lease = Lease(out, run_id, ttl_s=ttl)
    lease.acquire()
    lease.start_renewing()
    print("held", flush=True)
    writes: list[float] = []
    try:
        while True:
            t = time.time()
            lease.check(now=t)
            writes.append(t)
            storage.write_bytes(f"{out}photo-{len(writes) % 5}.txt", b"x")
            time.sleep(0.02)
    except LeaseLost as e:
        with open(result, "w") as f:
            json.dump({"writes": writes, "lost": str(e), "token": lease.token}, f)
        sys.exit(EXIT_LEASE_LOST)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "race":
        race(args[0], int(args[1]), float(args[2]), float(args[3]), args[4])
    else:
        hold(args[0], float(args[1]), args[2], args[3])
