"""A lease object ``OUT/_beardnet/lease.json`` so that two transform runs never share an output.

The lease names its owner (run id, host, pid) and an expiry. :meth:`Lease.acquire` refuses with
:class:`LeaseHeld` while another owner's lease is live; an expired lease (a run that was killed)
is taken over. A running job renews it in a background thread every ``ttl/3`` seconds and
releases it (deletes the object) at the end.

Object stores have no compare-and-swap that every S3 server supports, so acquisition is
write-then-verify: write our lease, wait ``settle_s``, read it back; if another run wrote after
us, the later writer wins and we back off. Two runs starting within ``settle_s`` of each other
are the only window where both might read "free" and one still loses on read-back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass

from beardnet.infer.keys import meta_uri

log = logging.getLogger(__name__)

LEASE_NAME = "lease.json"


class LeaseHeld(RuntimeError):
    """Another live run holds the output's lease."""


class LeaseLost(RuntimeError):
    """Our lease was taken over (it expired, or another run overwrote it)."""


@dataclass(frozen=True)
class LeaseInfo:
    """Content of ``lease.json``."""

    run_id: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseInfo:
        d = json.loads(data.decode())
        return cls(
            run_id=str(d["run_id"]),
            host=str(d.get("host", "?")),
            pid=int(d.get("pid", 0)),
            acquired_at=float(d.get("acquired_at", 0.0)),
            expires_at=float(d["expires_at"]),
        )

    def describe(self) -> str:
        left = self.expires_at - time.time()
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires_at))
        return (
            f"run {self.run_id} on {self.host} (pid {self.pid}), "
            f"lease expires {when} (in {left:.0f} s)"
        )


class Lease:
    """The lease on one output prefix for one run."""

    def __init__(
        self,
        output_uri: str,
        run_id: str,
        ttl_s: float = 600.0,
        *,
        s3=None,
        settle_s: float = 0.5,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("lease ttl must be positive")
        self.uri = meta_uri(output_uri, LEASE_NAME)
        self.run_id = run_id
        self.ttl_s = float(ttl_s)
        self.s3 = s3
        self.settle_s = settle_s
        self.acquired_at = 0.0
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------------
    def current(self) -> LeaseInfo | None:
        """The lease object now in the store, or None (missing or unreadable)."""
        from beardnet import storage

        try:
            if not storage.exists(self.uri, s3=self.s3):
                return None
            return LeaseInfo.from_json(storage.read_bytes(self.uri, s3=self.s3))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError) as e:  # garbage in lease.json: treat as free, but say so
            log.warning("lease %s is unreadable (%s); treating it as free", self.uri, e)
            return None

    def _write(self) -> LeaseInfo:
        from beardnet import storage

        now = time.time()
        info = LeaseInfo(
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            acquired_at=self.acquired_at or now,
            expires_at=now + self.ttl_s,
        )
        storage.write_bytes(self.uri, info.to_json(), s3=self.s3)
        return info

    # -- life cycle ----------------------------------------------------------------------------
    def acquire(self) -> LeaseInfo:
        """Take the lease or raise :class:`LeaseHeld` naming the live owner."""
        cur = self.current()
        if cur is not None and cur.run_id != self.run_id and cur.expires_at > time.time():
            raise LeaseHeld(f"output is busy: {cur.describe()}; lease object {self.uri}")
        if cur is not None and cur.run_id != self.run_id:
            log.warning("taking over an expired lease: %s", cur.describe())
        self.acquired_at = time.time()
        info = self._write()
        if self.settle_s > 0:
            time.sleep(self.settle_s)
            back = self.current()
            if back is None or back.run_id != self.run_id:
                other = back.describe() if back else "unknown run"
                raise LeaseHeld(f"output is busy: lost the lease race to {other}")
        return info

    def renew(self) -> LeaseInfo:
        """Push the expiry forward; raise :class:`LeaseLost` if the lease is no longer ours."""
        cur = self.current()
        if cur is None or cur.run_id != self.run_id:
            who = cur.describe() if cur else "nobody (object gone)"
            self.lost = f"lease lost: now held by {who}"
            raise LeaseLost(self.lost)
        return self._write()

    def release(self) -> None:
        """Stop renewing and delete the lease object if it is still ours."""
        from beardnet import storage

        self.stop_renewing()
        try:
            cur = self.current()
            if cur is not None and cur.run_id == self.run_id:
                storage.delete(self.uri, s3=self.s3)
        except Exception as e:  # noqa: BLE001 - release is best effort: the lease expires anyway
            log.warning("could not release lease %s: %s", self.uri, e)

    def start_renewing(self, every_s: float | None = None) -> None:
        """Renew in a daemon thread every ``every_s`` (default ``ttl/3``) seconds."""
        if self._thread is not None:
            return
        period = every_s if every_s is not None else max(self.ttl_s / 3.0, 0.05)
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(period):
                try:
                    self.renew()
                except LeaseLost as e:
                    log.error("%s", e)
                    return
                except Exception as e:  # noqa: BLE001 - transient store error: try again next period
                    log.warning("lease renewal failed (will retry): %s", e)

        self._thread = threading.Thread(target=loop, name="beardnet-lease", daemon=True)
        self._thread.start()

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Lease:  # noqa: PYI034
        self.acquire()
        self.start_renewing()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
