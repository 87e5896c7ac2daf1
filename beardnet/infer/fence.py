"""Fencing the transform's writes with the output lease, across Ray workers.

The driver holds the lease (:mod:`beardnet.infer.lease`); photos are written by Ray tasks on
other processes and nodes. How they learn whether a write may start:

- a small Ray actor, :class:`LeaseClock` (0 CPUs), holds ``valid_until``: the wall-clock time
  until which a new write may start, as the lease last confirmed it, and the lease token;
- on the driver, :class:`ClockPusher` (a thread) publishes ``Lease.valid_until()`` to it every
  :func:`push_period` seconds, and ``0`` as soon as the lease is lost;
- in the workers, :class:`WriteGuard` caches the value it last fetched and fetches again only
  when the cache has run out; a photo write starts only before the cached ``valid_until``. If
  the fresh value has run out too, it waits a little for a renewal, then refuses the write
  (the photo's row: ``write: lease_lost``).

Bound: every published ``valid_until`` is at most ``ttl/3`` after a successful check of the
lease in the store, and values only move forward while the lease holds; a worker's cached
value is one of them. So no photo write starts later than ``ttl/3`` after the lease was lost
(with host clocks in sync).

Manifest parts and the run summary carry the lease token and are written only after a check
of the lease object in the store (:meth:`WriteGuard.check_part`, ``Lease.check()`` on the
driver). Parts of a run that lost its lease to a newer token are ignored by readers
(:mod:`beardnet.infer.state`).

The lease API used: ``Lease.token``, ``Lease.valid_until()``, ``Lease.renew()`` (a
conditional write: proof in the store) and ``Lease.check()``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from beardnet.infer import lease as lease_mod
from beardnet.infer.errors import EXIT_LEASE_LOST  # noqa: F401 - documented here too

log = logging.getLogger(__name__)

LeaseLost = lease_mod.LeaseLost


class LeaseExpired(RuntimeError):
    """A write was refused: the lease is no longer known to be valid."""

    reason = "lease_lost"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- the lease API this module relies on ---------------------------------------------------
def lease_token(lease: Any) -> int:
    """The lease's fencing token."""
    return int(lease.token)


def lease_check(lease: Any) -> None:
    """Raise LeaseLost unless the store still says the lease is ours: a conditional renewal
    (``If-Match`` our etag), then the local validity check."""
    lease.renew()
    lease.check()


def lease_valid_until(lease: Any) -> float:
    """Until when a new write may start (the last successful renewal + ttl/3)."""
    return float(lease.valid_until())


def push_period(ttl_s: float) -> float:
    return max(0.05, min(float(ttl_s) / 6.0, 2.0))


# -- the actor, the driver's pusher, the workers' guard ----------------------------------------
class LeaseClock:
    """Holds ``(valid_until, token)``; run as a Ray actor (or in process, for tests)."""

    def __init__(self, token: int, valid_until: float = 0.0) -> None:
        self.token = int(token)
        self.valid_until = float(valid_until)

    def set(self, valid_until: float) -> None:
        # forward only while valid; 0 (lost) is final
        if valid_until <= 0 or self.valid_until < 0:
            self.valid_until = -1.0
        else:
            self.valid_until = max(self.valid_until, float(valid_until))

    def get(self) -> tuple[float, int]:
        return self.valid_until, self.token


def start_clock(token: int, valid_until: float) -> Any:
    """A :class:`LeaseClock` Ray actor (0 CPUs, so it never takes a stage's slot)."""
    import ray

    return ray.remote(num_cpus=0)(LeaseClock).remote(token, valid_until)


class ClockPusher:
    """Driver thread: publish ``lease_valid_until`` to the clock; 0 once the lease is lost."""

    def __init__(self, lease: Any, clock: Any, period_s: float) -> None:
        self.lease, self.clock, self.period_s = lease, clock, period_s
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="beardnet-lease-clock",
                                        daemon=True)

    def _set(self, value: float) -> None:
        if hasattr(self.clock.set, "remote"):
            import ray

            ray.get(self.clock.set.remote(value))
        else:
            self.clock.set(value)

    def push(self) -> None:
        try:
            value = lease_valid_until(self.lease)
        except LeaseLost as e:
            self.lost = str(e)
            value = 0.0
        except Exception as e:  # noqa: BLE001 - transient: keep the last value, it runs out
            log.warning("lease check failed (will retry): %s", e)
            return
        self._set(value)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.push()
            if self.lost:
                log.error("%s: photo writes stop", self.lost)
                return

    def start(self) -> ClockPusher:
        self.push()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class WriteGuard:
    """Worker side (picklable): may a photo write start now? See the module docstring."""

    def __init__(self, clock: Any, token: int, wait_s: float, store_check: dict | None = None):
        self.clock = clock
        self.token = int(token)
        self.wait_s = float(wait_s)
        self.store_check = store_check  # {"output": ..., "run_id": ..., "s3": ...}
        self._until = 0.0

    def _fetch(self) -> float:
        if hasattr(self.clock.get, "remote"):
            import ray

            until, _ = ray.get(self.clock.get.remote())
        else:
            until, _ = self.clock.get()
        self._until = float(until)
        return self._until

    def check_write(self) -> None:
        """Return if a write may start now, else raise :class:`LeaseExpired`."""
        if time.time() < self._until:
            return
        deadline = time.monotonic() + self.wait_s
        while True:
            until = self._fetch()
            if until < 0:
                raise LeaseExpired("the run lost its output lease; nothing more is written")
            if time.time() < until:
                return
            if time.monotonic() >= deadline:
                raise LeaseExpired("the output lease was not confirmed in time")
            time.sleep(min(0.2, self.wait_s / 10 + 0.01))

    def check_part(self) -> None:
        """Before a manifest part: the clock says valid *and* the lease object in the store is
        still this run's (and unexpired)."""
        self.check_write()
        sc = self.store_check
        if not sc:
            return
        cur = lease_mod.Lease(sc["output"], sc["run_id"], s3=sc.get("s3")).current()
        tok = getattr(cur, "token", None) if cur is not None else None
        if (cur is None or cur.run_id != sc["run_id"] or cur.expires_at <= time.time()
                or (tok is not None and int(tok) != self.token)):
            raise LeaseExpired("the lease object is no longer this run's")
