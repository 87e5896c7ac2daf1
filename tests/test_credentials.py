"""Credentials come from boto3's chain, reach boto3 and pyarrow alike, and never travel."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from botocore.exceptions import ClientError

from beardnet import storage
from beardnet.storage import S3Settings

ROOT = Path(__file__).resolve().parents[1]
KEY_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@pytest.fixture
def no_env_keys(monkeypatch):
    """The process environment holds no credential: only the files/profile under test do."""
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _both_clients_work(st: S3Settings, bucket: str, name: str) -> None:
    """Write with boto3, read back with boto3 and with pyarrow."""
    storage.write_bytes(f"s3://{bucket}/{name}", name.encode(), s3=st)
    assert storage.read_bytes(f"s3://{bucket}/{name}", s3=st) == name.encode()
    fs, path = storage.resolve(f"s3://{bucket}/{name}", st)
    with fs.open_input_stream(path) as f:
        assert f.read() == name.encode()


def _both_clients_refused(st: S3Settings, bucket: str) -> None:
    with pytest.raises(ClientError):
        storage.read_bytes(f"s3://{bucket}/probe", s3=st)
    fs, path = storage.resolve(f"s3://{bucket}/probe", st)
    with pytest.raises(OSError, match="ACCESS_DENIED|InvalidAccessKeyId|403"):
        fs.get_file_info(path)


def test_profile_from_temporary_shared_files(s3, bucket, tmp_path, no_env_keys) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[archive]\naws_access_key_id = {s3.access_key_id}\n"
        f"aws_secret_access_key = {s3.settings.secret_access_key}\n"
        f"[wrong]\naws_access_key_id = {s3.access_key_id}\naws_secret_access_key = nope\n"
    )
    config = tmp_path / "config"
    config.write_text("[profile archive]\nregion = us-east-1\n[profile wrong]\n")
    no_env_keys.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    no_env_keys.setenv("AWS_CONFIG_FILE", str(config))
    st = S3Settings(endpoint_url=s3.endpoint_url, profile="archive")
    _both_clients_work(st, bucket, "profile.txt")
    assert storage.describe_credentials(st) == "shared-credentials-file (static)"
    # the profile really is what signs: the other one is refused by both clients
    _both_clients_refused(S3Settings(endpoint_url=s3.endpoint_url, profile="wrong"), bucket)
    # AWS_PROFILE picks it too, as for every AWS tool
    no_env_keys.setenv("AWS_PROFILE", "archive")
    _both_clients_work(S3Settings(endpoint_url=s3.endpoint_url), bucket, "aws-profile.txt")


def test_session_token_reaches_boto3_and_pyarrow(s3, bucket, no_env_keys) -> None:
    """The local server rejects a session token it did not issue, so a refusal by both clients
    proves the token went out with each request; without it both succeed."""
    st = S3Settings(endpoint_url=s3.endpoint_url)
    no_env_keys.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
    no_env_keys.setenv("AWS_SECRET_ACCESS_KEY", s3.settings.secret_access_key)
    _both_clients_work(st, bucket, "no-token.txt")
    no_env_keys.setenv("AWS_SESSION_TOKEN", "tok-from-an-assumed-role")
    assert storage.credentials(st).token == "tok-from-an-assumed-role"
    assert storage.describe_credentials(st) == "env (temporary)"
    fs, _ = storage.resolve(f"s3://{bucket}/x", st)
    assert fs.__reduce__()[1][0]["session_token"] == "tok-from-an-assumed-role"
    _both_clients_refused(st, bucket)


def test_refreshed_credentials_reach_both_clients(s3, bucket, tmp_path, no_env_keys) -> None:
    """A credential_process profile hands out short-lived keys: boto3 refreshes them and
    pyarrow's filesystem is rebuilt on the refreshed ones, with no change to settings or env."""
    current = tmp_path / "current.json"
    script = tmp_path / "creds.py"
    script.write_text(
        "import datetime, json, sys\n"
        f"d = json.load(open({str(current)!r}))\n"
        "exp = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)\n"
        "d.update(Version=1, Expiration=exp.strftime('%Y-%m-%dT%H:%M:%SZ'))\n"
        "print(json.dumps(d))\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[profile rotating]\ncredential_process = {sys.executable} {script}\n")
    no_env_keys.setenv("AWS_CONFIG_FILE", str(config))
    no_env_keys.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    st = S3Settings(endpoint_url=s3.endpoint_url, profile="rotating")
    current.write_text(json.dumps({"AccessKeyId": s3.access_key_id, "SecretAccessKey": "old"}))
    _both_clients_refused(st, bucket)
    current.write_text(json.dumps({"AccessKeyId": s3.access_key_id,
                                   "SecretAccessKey": s3.settings.secret_access_key}))
    _both_clients_work(st, bucket, "rotated.txt")
    assert storage.describe_credentials(st) == "custom-process (static)"


def test_secrets_never_travel(s3) -> None:
    from beardnet.raysession import worker_env

    st = S3Settings(endpoint_url=s3.endpoint_url, access_key_id="AKIDSECRETID",
                    secret_access_key="shh-secret", session_token="tok-secret", profile="p")
    blob = pickle.dumps(st)
    for secret in (b"AKIDSECRETID", b"shh-secret", b"tok-secret"):
        assert secret not in blob
    back = pickle.loads(blob)
    assert back == st.public() and back.profile == "p" and back.secret_access_key is None
    text = repr(st) + str(st) + json.dumps(worker_env(st)) + json.dumps(st.to_env())
    for secret in ("AKIDSECRETID", "shh-secret", "tok-secret"):
        assert secret not in text
    assert worker_env(st)["AWS_PROFILE"] == "p"


def test_library_sets_no_safety_switches() -> None:
    """Only the test harness sets AWS_EC2_METADATA_DISABLED / RAY_AUTH_MODE, never the library
    (instance roles and Ray auth must keep working in production)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_EC2_METADATA_DISABLED", "RAY_AUTH_MODE")}
    code = (
        "import os, json\n"
        "from beardnet import storage, raysession, s3server\n"
        "from beardnet.infer import job, lease\n"
        "st = storage.S3Settings(endpoint_url='http://127.0.0.1:9')\n"
        "w = raysession.worker_env(st)\n"
        "with storage.exported_env(st):\n"
        "    inside = dict(os.environ)\n"
        "names = ('AWS_EC2_METADATA_DISABLED', 'RAY_AUTH_MODE')\n"
        "print(json.dumps([n for n in names if n in os.environ or n in w or n in inside]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_anonymous_when_the_chain_finds_nothing(tmp_path, no_env_keys) -> None:
    no_env_keys.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    no_env_keys.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    no_env_keys.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance to ask here
    no_env_keys.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    no_env_keys.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    st = S3Settings(endpoint_url="http://127.0.0.1:9")
    assert storage.credentials(st) is None
    assert storage.describe_credentials(st) == "none found (anonymous)"
    assert isinstance(storage.s3_filesystem(st), pafs.S3FileSystem)
