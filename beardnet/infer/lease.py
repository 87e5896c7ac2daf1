"""The output lease ``OUT/_beardnet/lease.json``: one writing run per output, with a bound.

Every step is a conditional write, so two runs can never both hold the lease:

- **acquire**: create with ``If-None-Match: *``; if an object is there and it is free (released)
  or expired, take it over with ``If-Match: <its etag>``; a live lease of another run raises
  :class:`LeaseHeld`. Whoever loses a race gets HTTP 412 and :class:`LeaseHeld`.
- **renew** (a background thread every ``ttl/6``): overwrite with ``If-Match: <our etag>``.
  A 412 (someone took it) or a renewal that fails after the retry budget marks the lease lost.
- **release**: delete with ``If-Match`` where the store honours it, else overwrite it (again
  ``If-Match``) with a record marked free.

**The bound.** Photo PUTs cannot be conditional on the lease, so a writer calls :meth:`Lease.check`
before each write: it passes only until :meth:`Lease.valid_until`, which is the send time of the
last successful renewal plus ``ttl/3``. Whoever takes the lease over did so after that renewal
reached the store, so **no write starts later than ttl/3 after the lease was lost** (stolen, or
expired: expiry is ``ttl`` after that renewal). :attr:`Lease.token` is a fencing token that grows
across successive holders (``max(previous + 1, now in µs, last token this process saw + 1)``:
strictly larger even when a released (deleted) lease is re-created at once); a run writes it into its manifest
parts and summary so readers can tell whose they are.

At :meth:`Lease.acquire` the store is probed (:func:`probe_conditional_writes`): a store that
does not enforce conditional writes is refused with :class:`ConditionalWritesUnsupported` unless
the caller passes ``no_lease=True`` (the job's ``--no-lease``), which runs without any lease.

Exit codes of the job: 75 (``EXIT_LEASE`` in the job) means "busy, another run holds the lease:
try later"; :data:`EXIT_LEASE_LOST` (76) means "this run lost its lease and stopped writing".
Local outputs (``file://``, paths) use the same protocol under a lock file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from beardnet import storage
from beardnet.infer.keys import meta_uri
from beardnet.storage import PreconditionFailed

log = logging.getLogger(__name__)

LEASE_NAME = "lease.json"
#: Exit code of a run that lost its lease mid-run and stopped writing (75 is "busy, try later").
EXIT_LEASE_LOST = 76


class LeaseError(RuntimeError):
    """Base of the lease's errors."""


class LeaseHeld(LeaseError):
    """Another live run holds the output's lease."""


class LeaseLost(LeaseError):
    """Our lease was taken over, expired or could not be renewed: stop writing."""


class ConditionalWritesUnsupported(LeaseError):
    """The store accepts conditional writes without enforcing them: a lease would not hold."""


@dataclass(frozen=True)
class LeaseInfo:
    """Content of ``lease.json``."""

    run_id: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float
    token: int = 0
    free: bool = False

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
            token=int(d.get("token", 0)),
            free=bool(d.get("free", False)),
        )

    def live(self, now: float | None = None) -> bool:
        """Held and not expired (by this machine's clock)."""
        return not self.free and self.expires_at > (time.time() if now is None else now)

    def describe(self) -> str:
        if self.free:
            return f"nobody (released by run {self.run_id})"
        left = self.expires_at - time.time()
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires_at))
        return (
            f"run {self.run_id} on {self.host} (pid {self.pid}), "
            f"lease expires {when} (in {left:.0f} s)"
        )


@dataclass(frozen=True)
class StoreSupport:
    """What :func:`probe_conditional_writes` found."""

    conditional_put: bool
    conditional_delete: bool
    detail: str = ""


_probed: dict[tuple[str, str], StoreSupport] = {}


_last_token = 0
_token_lock = threading.Lock()


def _next_token(prev: int, now: float) -> int:
    """A fencing token above ``prev``, above every token this process handed out, and at least
    the time in microseconds (so successive holders in different processes grow too)."""
    global _last_token
    with _token_lock:
        _last_token = max(prev + 1, _last_token + 1, int(now * 1e6))
        return _last_token


def probe_conditional_writes(output_uri: str, s3: Any = None) -> StoreSupport:
    """Check on a probe object under ``OUT/_beardnet/`` that the store refuses a second
    ``If-None-Match: *`` create and a stale ``If-Match`` (HTTP 412), and whether it honours
    ``If-Match`` on delete; remembered per endpoint and bucket in this process. Local outputs
    always do (lock file)."""
    if not storage.is_s3(output_uri):
        return StoreSupport(True, True, "local files (lock file)")
    where = (str(getattr(s3, "endpoint_url", None)), storage.split_s3(output_uri)[0])
    if where not in _probed:
        _probed[where] = _probe(output_uri, s3)
    return _probed[where]


def _probe(output_uri: str, s3: Any) -> StoreSupport:
    uri = meta_uri(output_uri, f"probe-{uuid.uuid4().hex}.json")
    stale = '"00000000000000000000000000000000"'
    try:
        storage.put_conditional(uri, b"1", if_none_match=True, s3=s3)
    except Exception as exc:  # noqa: BLE001 - any refusal here means "not supported"
        return StoreSupport(False, False, f"conditional create failed: {exc}")
    try:
        for what, kwargs in (("a second If-None-Match create", {"if_none_match": True}),
                             ("a stale If-Match write", {"if_match": stale})):
            try:
                storage.put_conditional(uri, b"2", s3=s3, **kwargs)
            except PreconditionFailed:
                continue
            except Exception as exc:  # noqa: BLE001
                return StoreSupport(False, False, f"{what} failed: {exc}")
            return StoreSupport(False, False, f"the store accepted {what}")
        try:
            storage.delete_conditional(uri, stale, s3=s3)
        except PreconditionFailed:
            return StoreSupport(True, True, "conditional create, overwrite and delete")
        except Exception as exc:  # noqa: BLE001
            return StoreSupport(True, False, f"no conditional delete ({exc})")
        return StoreSupport(True, False, "the store ignored If-Match on delete")
    finally:
        try:
            storage.delete(uri, s3=s3)
        except Exception as exc:  # noqa: BLE001 - a left-over probe object is harmless
            log.warning("could not delete lease probe %s: %s", uri, exc)


class Lease:
    """The lease on one output prefix for one run (see the module docstring).

    ``no_lease=True`` runs without one: :meth:`acquire` only logs, :meth:`check` always passes.
    ``settle_s`` is accepted for old callers and ignored.
    """

    def __init__(
        self,
        output_uri: str,
        run_id: str,
        ttl_s: float = 600.0,
        *,
        s3: Any = None,
        no_lease: bool = False,
        settle_s: float | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("lease ttl must be positive")
        self.uri = meta_uri(output_uri, LEASE_NAME)
        self.output_uri = output_uri
        self.run_id = run_id
        self.ttl_s = float(ttl_s)
        self.s3 = s3
        self.no_lease = no_lease
        #: Why the lease was lost (None while it is held or was never taken).
        self.lost: str | None = None
        self.info: LeaseInfo | None = None
        self.etag: str | None = None
        self.acquired_at = 0.0
        self._renewed_at = -math.inf  # send time of the last successful write of our record
        self._lost_at = math.inf
        self._delete_ok = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def token(self) -> int:
        """Fencing token of our tenure (0 without a lease)."""
        return 0 if self.info is None else self.info.token

    def valid_until(self) -> float:
        """Wall-clock time until which a new write may start: the last successful renewal's
        send time plus ``ttl/3`` (earlier if the lease is known lost); ``inf`` without a lease."""
        if self.no_lease:
            return math.inf
        with self._lock:
            return min(self._renewed_at + self.ttl_s / 3.0, self._lost_at)

    def check(self, now: float | None = None) -> None:
        """Raise :class:`LeaseLost` unless a write may start now (call before every write)."""
        if self.no_lease:
            return
        t = time.time() if now is None else now
        if self.lost is None and t > self.valid_until():
            self._mark_lost(f"lease not renewed since {self._renewed_at:.3f} (ttl {self.ttl_s} s)")
        if self.lost is not None:
            raise LeaseLost(self.lost)

    def _mark_lost(self, why: str) -> None:
        with self._lock:
            if self.lost is None:
                self.lost = why
                self._lost_at = time.time()
                log.error("%s; stopping writes", why)

    def current(self) -> LeaseInfo | None:
        """The lease record now in the store, or None (missing or unreadable)."""
        try:
            return LeaseInfo.from_json(storage.read_bytes(self.uri, s3=self.s3))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError) as e:  # garbage in lease.json: treat as free, but say so
            log.warning("lease %s is unreadable (%s); treating it as free", self.uri, e)
            return None

    def _record(self, token: int, expires_at: float, free: bool = False) -> LeaseInfo:
        return LeaseInfo(self.run_id, socket.gethostname(), os.getpid(),
                         self.acquired_at, expires_at, token, free)

    def _held(self, info: LeaseInfo, etag: str, sent: float) -> LeaseInfo:
        with self._lock:
            self.info, self.etag, self._renewed_at = info, etag, sent
        return info

    # -- life cycle --------------------------------------------------------------------------
    def acquire(self) -> LeaseInfo:
        """Take the lease or raise :class:`LeaseHeld` naming the live owner;
        :class:`ConditionalWritesUnsupported` on a store that would not enforce it."""
        self.acquired_at = time.time()
        if self.no_lease:
            log.warning("running without a lease on %s: nothing stops a second run",
                        self.output_uri)
            self.info = self._record(0, math.inf)
            return self.info
        support = probe_conditional_writes(self.output_uri, self.s3)
        if not support.conditional_put:
            raise ConditionalWritesUnsupported(
                f"the store of {self.output_uri} does not enforce conditional writes "
                f"({support.detail}), so a lease cannot keep a second run out; run with "
                "--no-lease if you are sure no other run writes there")
        self._delete_ok = support.conditional_delete
        for _ in range(3):
            sent = time.time()
            info = self._record(_next_token(0, sent), sent + self.ttl_s)
            try:
                etag = storage.put_conditional(self.uri, info.to_json(), if_none_match=True,
                                               s3=self.s3)
                return self._held(info, etag, sent)
            except PreconditionFailed:
                pass
            try:
                data, etag = storage.read_versioned(self.uri, s3=self.s3)
            except FileNotFoundError:
                continue  # released in between: try to create it again
            try:
                cur: LeaseInfo | None = LeaseInfo.from_json(data)
            except (ValueError, KeyError) as e:
                log.warning("lease %s is unreadable (%s); taking it over", self.uri, e)
                cur = None
            if cur is not None and cur.live() and cur.run_id != self.run_id:
                raise LeaseHeld(f"output is busy: {cur.describe()}; lease object {self.uri}")
            if cur is not None and not cur.free:
                log.warning("taking over an expired lease: %s", cur.describe())
            sent = time.time()
            prev = cur.token if cur is not None else 0
            info = self._record(_next_token(prev, sent), sent + self.ttl_s)
            try:
                etag = storage.put_conditional(self.uri, info.to_json(), if_match=etag,
                                               s3=self.s3)
                return self._held(info, etag, sent)
            except PreconditionFailed:
                other = self.current()
                who = other.describe() if other else "another run"
                raise LeaseHeld(f"output is busy: lost the lease race to {who}") from None
        raise LeaseHeld(f"output is busy: the lease object {self.uri} keeps changing")

    def renew(self) -> LeaseInfo:
        """Push the expiry forward (``If-Match`` our etag); on any failure mark the lease lost
        and raise :class:`LeaseLost`."""
        if self.no_lease:
            assert self.info is not None
            return self.info
        if self.lost is not None or self.info is None or self.etag is None:
            raise LeaseLost(self.lost or "lease not held")
        sent = time.time()
        info = dataclasses.replace(self.info, expires_at=sent + self.ttl_s)
        try:
            etag = storage.put_conditional(self.uri, info.to_json(), if_match=self.etag,
                                           s3=self.s3)
        except PreconditionFailed:
            other = self.current()
            self._mark_lost(f"lease lost: now held by {other.describe() if other else 'nobody'}")
            raise LeaseLost(self.lost) from None
        except Exception as exc:
            self._mark_lost(f"lease lost: renewal failed: {exc}")
            raise LeaseLost(self.lost) from exc
        if self.lost is not None:  # the validity ran out while the renewal was in flight
            raise LeaseLost(self.lost)
        return self._held(info, etag, sent)

    def release(self) -> None:
        """Stop renewing; delete our record (``If-Match``), or mark it free where the store has
        no conditional delete. Someone else's lease is never touched."""
        self.stop_renewing()
        if self.no_lease or self.info is None or self.etag is None or self.lost is not None:
            return
        try:
            if self._delete_ok:
                storage.delete_conditional(self.uri, self.etag, s3=self.s3)
            else:
                free = dataclasses.replace(self.info, expires_at=time.time(), free=True)
                storage.put_conditional(self.uri, free.to_json(), if_match=self.etag, s3=self.s3)
        except PreconditionFailed:
            log.warning("lease %s is no longer ours; left as it is", self.uri)
        except Exception as e:  # noqa: BLE001 - release is best effort: the lease expires anyway
            log.warning("could not release lease %s: %s", self.uri, e)
        self.etag = None

    def start_renewing(self, every_s: float | None = None) -> None:
        """Renew in a daemon thread every ``every_s`` (default ``ttl/6``) seconds until
        stopped or lost."""
        if self._thread is not None or self.no_lease:
            return
        period = every_s if every_s is not None else max(self.ttl_s / 6.0, 0.05)
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(period):
                try:
                    self.renew()
                except LeaseLost:
                    return

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

    def __exit__(self, *exc: object) -> None:
        self.release()
