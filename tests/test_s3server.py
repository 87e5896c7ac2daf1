"""The local SeaweedFS server: loopback only, credentials, clean stop, persistence, CLI."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from beardnet import storage
from beardnet.s3server import DEFAULT_SECRET_KEY, LocalS3
from beardnet.storage import S3Settings


def _listening(pid: int) -> list[tuple[str, int]]:
    """(hex address, port) of every TCP socket the process listens on."""
    inodes = set()
    for fd in glob.glob(f"/proc/{pid}/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                addr, state, inode = parts[1], parts[3], parts[9]
                if state == "0A" and inode in inodes:
                    host, port = addr.split(":")
                    out.append((host, int(port, 16)))
    return out


def test_start_stop_loopback_only_and_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k-from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s-from-env")
    server = LocalS3()
    server.start()
    try:
        assert server.start_seconds is not None
        assert server.access_key_id == "k-from-env" and not server.secret_is_default
        assert "s-from-env" not in "\n".join(server.export_lines())
        assert "s-from-env" not in repr(server) + repr(server.settings)
        pid, scratch = server.pid, server.scratch
        listening = _listening(pid)
        assert listening, "weed listens on nothing?"
        assert all(host == "0100007F" for host, _ in listening), listening  # 127.0.0.1 only
        assert server.port in {p for _, p in listening}
        # no extra services: at most master, volume, filer, s3, admin (+ their gRPC ports)
        assert len(listening) <= 10, listening
        server.create_bucket("tmp-bucket")
        storage.write_bytes("s3://tmp-bucket/x", b"x", s3=server.settings)
        assert storage.read_bytes("s3://tmp-bucket/x", s3=server.settings) == b"x"
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError):
            storage.read_bytes(
                "s3://tmp-bucket/x",
                s3=S3Settings(endpoint_url=server.endpoint_url, access_key_id="k-from-env",
                              secret_access_key="wrong"),
            )
        ports = list(server.ports.values())
    finally:
        server.stop()
    assert server.stop_seconds is not None and server.stop_seconds < 30
    assert not os.path.exists(f"/proc/{pid}")  # stopped and reaped
    assert not os.path.exists(scratch)
    assert not [s for p in ports for s in glob.glob(f"/tmp/seaweedfs-*-{p}.sock")]
    server.stop()  # idempotent


def test_data_dir_survives_restart(tmp_path):
    data = tmp_path / "s3data"
    with LocalS3(data) as server:
        server.create_bucket("keep")
        storage.write_bytes("s3://keep/a/b ü.bin", b"kept", s3=server.settings)
    with LocalS3(data) as server:
        assert storage.read_bytes("s3://keep/a/b ü.bin", s3=server.settings) == b"kept"
    assert data.is_dir() and any(data.iterdir())


def test_serve_cli_prints_endpoint_and_stops_on_sigint(tmp_path):
    env = dict(os.environ)
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "beardnet.cli", "s3", "serve", "--bucket", "served"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                break
        text = "\n".join(lines)
        assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in text, text
        assert f"export AWS_SECRET_ACCESS_KEY={DEFAULT_SECRET_KEY}" in text
        endpoint = next(x for x in lines if x.startswith("export AWS_ENDPOINT_URL="))
        st = S3Settings(endpoint_url=endpoint.split("=", 1)[1], access_key_id="beardnet",
                        secret_access_key=DEFAULT_SECRET_KEY)
        assert storage.exists("s3://served", s3=st)
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    assert rc == 0, proc.stdout.read()


def test_export_lines_hide_a_non_default_secret():
    server = LocalS3(secret_access_key="from-somewhere-else")
    server.port = 1  # not started: only the printing is tested
    lines = server.export_lines()
    assert not any("from-somewhere-else" in x for x in lines)
    assert any("not shown" in x for x in lines)
