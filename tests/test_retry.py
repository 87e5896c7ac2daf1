"""One retry budget per object (5 attempts across layers), throttling backed off, SSE on puts."""

from __future__ import annotations

import dataclasses

import pytest
from s3proxy import ThrottlingProxy

from beardnet import retry, storage
from beardnet.storage import GaveUp


@pytest.fixture
def proxy(s3, monkeypatch):
    monkeypatch.setattr(retry, "THROTTLE_BASE_S", 0.02)  # keep the test quick; same code path
    monkeypatch.setattr(retry, "BACKOFF_BASE_S", 0.01)
    with ThrottlingProxy(s3.endpoint_url) as p:
        yield p


def _via(proxy, s3, **kw):
    return dataclasses.replace(s3.settings, endpoint_url=proxy.endpoint_url, **kw)


def test_throttled_put_is_backed_off_and_succeeds(proxy, s3, bucket) -> None:
    left = {"n": 3}

    def first_three_puts(method: str, path: str) -> bool:
        if method == "PUT" and path == f"/{bucket}/slow.jpg" and left["n"] > 0:
            left["n"] -= 1
            return True
        return False

    proxy.throttle = first_three_puts
    storage.write_bytes(f"s3://{bucket}/slow.jpg", b"ok", s3=_via(proxy, s3))
    assert proxy.count("PUT", f"/{bucket}/slow.jpg") == 4
    assert storage.read_bytes(f"s3://{bucket}/slow.jpg", s3=s3.settings) == b"ok"


def test_give_up_after_five_attempts_in_all_layers(proxy, s3, bucket) -> None:
    proxy.throttle = lambda method, path: path.endswith("/never.jpg")
    st = _via(proxy, s3)
    with pytest.raises(GaveUp, match=r"never\.jpg after 5 attempts \(5 throttled\)"):
        storage.write_bytes(f"s3://{bucket}/never.jpg", b"x", s3=st)
    assert proxy.count("PUT", f"/{bucket}/never.jpg") == 5  # not 3 x 5 = 15
    with pytest.raises(GaveUp):
        storage.read_bytes(f"s3://{bucket}/never.jpg", s3=st)
    assert proxy.count("GET", f"/{bucket}/never.jpg") == 5
    # pyarrow's own retry strategy has the same bound
    fs, path = storage.resolve(f"s3://{bucket}/never.jpg", st)
    with pytest.raises(OSError):
        fs.get_file_info(path)
    assert proxy.count("HEAD", f"/{bucket}/never.jpg") == storage.MAX_ATTEMPTS


def test_permanent_errors_are_not_retried(proxy, s3, bucket) -> None:
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"s3://{bucket}/missing.jpg", s3=_via(proxy, s3))
    assert proxy.count("GET", f"/{bucket}/missing.jpg") == 1


def test_server_side_encryption_reaches_puts(proxy, s3, bucket) -> None:
    st = _via(proxy, s3, sse="AES256")
    storage.write_bytes(f"s3://{bucket}/sse-s3.jpg", b"x", s3=st)
    sent = proxy.headers_of("PUT", f"/{bucket}/sse-s3.jpg")[-1]
    assert sent["x-amz-server-side-encryption"] == "AES256"
    head = storage.boto3_client(s3.settings).head_object(Bucket=bucket, Key="sse-s3.jpg")
    assert head.get("ServerSideEncryption") == "AES256"
    st = _via(proxy, s3, sse="aws:kms", sse_kms_key_id="key-1")
    try:
        storage.write_bytes(f"s3://{bucket}/sse-kms.jpg", b"x", s3=st)
    except GaveUp as exc:  # the local server has no KMS configured: it answers InternalError
        assert "InternalError" in str(exc)
    sent = proxy.headers_of("PUT", f"/{bucket}/sse-kms.jpg")[-1]
    assert sent["x-amz-server-side-encryption"] == "aws:kms"
    assert sent["x-amz-server-side-encryption-aws-kms-key-id"] == "key-1"
