"""Storage round trips on local paths and on the session's S3 server."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from beardnet import storage
from beardnet.storage import S3Settings

ODD_KEYS = ["a.txt", "nested/deeper/b.bin", "with space/c d.txt", "ünï/ç😀.png", "z/UPPER.JPG"]


def _round_trip(base: str) -> None:
    for i, k in enumerate(ODD_KEYS):
        storage.write_bytes(storage.join(base, k), f"payload {i} {k}".encode())
    for i, k in enumerate(ODD_KEYS):
        uri = storage.join(base, k)
        assert storage.exists(uri)
        assert storage.read_bytes(uri) == f"payload {i} {k}".encode()
    assert list(storage.list_keys(base)) == sorted(ODD_KEYS)
    images = list(storage.list_keys(base, suffixes=[".png", ".jpg"]))
    assert images == ["z/UPPER.JPG", "ünï/ç😀.png"]
    assert list(storage.list_keys(storage.join(base, "nested"))) == ["deeper/b.bin"]
    assert not storage.exists(storage.join(base, "missing.txt"))
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(base, "missing.txt"))
    storage.write_bytes(storage.join(base, "a.txt"), b"replaced")
    assert storage.read_bytes(storage.join(base, "a.txt")) == b"replaced"
    storage.delete(storage.join(base, "a.txt"))
    assert not storage.exists(storage.join(base, "a.txt"))
    storage.delete(storage.join(base, "a.txt"))  # missing: no error


def test_local_round_trip_plain_path(tmp_path):
    _round_trip(str(tmp_path / "root"))
    assert not [n for n in os.listdir(tmp_path / "root") if n.startswith(".tmp-")]


def test_local_round_trip_file_uri(tmp_path):
    _round_trip(f"file://{tmp_path}/root")


def test_file_uri_is_percent_decoded(tmp_path):
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "x.txt").write_bytes(b"x")
    assert storage.read_bytes(f"file://{tmp_path}/a%20b/x.txt") == b"x"
    fs, path = storage.resolve(f"file://{tmp_path}/a%20b/x.txt")
    assert isinstance(fs, pafs.LocalFileSystem)
    assert path == str(tmp_path / "a b" / "x.txt")


def test_list_keys_missing_prefix_is_empty(tmp_path, bucket):
    assert list(storage.list_keys(str(tmp_path / "nope"))) == []
    assert list(storage.list_keys(f"s3://{bucket}/nope")) == []


def test_s3_round_trip(bucket):
    _round_trip(f"s3://{bucket}/root")
    assert list(storage.list_keys(f"s3://{bucket}")) == [f"root/{k}" for k in sorted(ODD_KEYS)
                                                         if k != "a.txt"]


def test_s3_prefix_is_a_folder(bucket):
    storage.write_bytes(f"s3://{bucket}/data/x", b"1")
    storage.write_bytes(f"s3://{bucket}/data2/y", b"2")
    assert list(storage.list_keys(f"s3://{bucket}/data")) == ["x"]
    assert list(storage.list_keys(f"s3://{bucket}/data/")) == ["x"]


def test_s3_list_more_than_1000_keys(bucket):
    n = 1234
    keys = [f"many/{i // 100:02d}/k{i:05d}.bin" for i in range(n)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: storage.write_bytes(f"s3://{bucket}/{k}", b"x"), keys))
    listed = list(storage.list_keys(f"s3://{bucket}/many"))
    assert len(listed) == n
    assert listed == sorted(k[len("many/"):] for k in keys)


def test_pyarrow_filesystem_on_s3(bucket, s3):
    fs, path = storage.resolve(f"s3://{bucket}/tables/t ü.parquet", s3.settings)
    assert isinstance(fs, pafs.S3FileSystem)
    assert path == f"{bucket}/tables/t ü.parquet"
    table = pa.table({"x": [1, 2, 3], "s": ["a", "b", "ç"]})
    pq.write_table(table, path, filesystem=fs)
    # written through pyarrow, read back through boto3
    back = pq.read_table(io.BytesIO(storage.read_bytes(f"s3://{bucket}/tables/t ü.parquet")))
    assert back.equals(table)
    assert fs.get_file_info(path).size > 0


def test_explicit_settings_override_env(bucket, s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    storage.write_bytes(f"s3://{bucket}/e.txt", b"e", s3=s3.settings)
    assert storage.read_bytes(f"s3://{bucket}/e.txt", s3=s3.settings) == b"e"


def test_wrong_secret_is_refused(bucket, s3):
    bad = S3Settings(endpoint_url=s3.endpoint_url, access_key_id=s3.access_key_id,
                     secret_access_key="not-the-secret")
    with pytest.raises(Exception) as ei:
        storage.read_bytes(f"s3://{bucket}/anything", s3=bad)
    assert not isinstance(ei.value, FileNotFoundError)


def test_settings_env_and_repr(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    st = S3Settings.from_env()
    assert st.endpoint_url == "http://127.0.0.1:8333"
    assert st.scheme == "http"
    assert st.endpoint_override == "127.0.0.1:8333"
    assert st.region == "eu-west-1"
    # keys are boto3's chain's business: settings never copy them out of the environment
    assert st.access_key_id is None and st.secret_access_key is None
    env = st.to_env()
    assert env == {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",
                   "AWS_ENDPOINT_URL": "http://127.0.0.1:8333"}
    assert S3Settings.from_env(env) == st
    assert S3Settings(endpoint_url="https://s3.example.test").scheme == "https"
    assert S3Settings().region == "us-east-1"
    with pytest.raises(ValueError, match="sse"):
        S3Settings(sse="rot13")
    with pytest.raises(ValueError, match="sse_kms_key_id"):
        S3Settings(sse="AES256", sse_kms_key_id="k")


def test_join_and_parent():
    assert storage.join("s3://b/pre/", "x/", "/y.png") == "s3://b/pre/x/y.png"
    assert storage.join("s3://b", "k") == "s3://b/k"
    assert storage.parent("s3://b/a/m.parquet") == "s3://b/a"
    assert storage.join("file:///tmp/a", "b") == "file:///tmp/a/b"
    assert storage.split_s3("s3://b/a b/c") == ("b", "a b/c")
    with pytest.raises(ValueError):
        storage.local_path("http://example.invalid/x")


def test_ray_workers_get_s3_settings_and_project(ray_session, bucket, s3):
    """Workers get the endpoint and the project through runtime_env, never a secret; a local
    Ray's workers resolve credentials from the environment they inherit."""
    import ray

    from beardnet.raysession import worker_env

    shipped = worker_env(s3.settings)
    assert shipped["AWS_ENDPOINT_URL"] == s3.endpoint_url
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_EC2_METADATA_DISABLED", "RAY_AUTH_MODE"} & set(shipped)
    assert s3.settings.secret_access_key not in repr(shipped)
    storage.write_bytes(f"s3://{bucket}/from-driver.txt", b"driver")

    @ray.remote
    def worker(b: str, st: S3Settings) -> dict:
        import os as _os

        from beardnet import storage as stg

        stg.write_bytes(f"s3://{b}/from-worker.txt", b"worker", s3=st)
        return {
            "read": stg.read_bytes(f"s3://{b}/from-driver.txt", s3=st).decode(),
            "endpoint": _os.environ.get("AWS_ENDPOINT_URL"),
            "arrived_without_keys": st.secret_access_key is None,
            "creds": stg.describe_credentials(st),
            "nice": _os.nice(0),
        }

    out = ray.get(worker.remote(bucket, s3.settings), timeout=120)
    # a local Ray's workers run at the driver's priority, not Ray's default nice 15
    assert out == {"read": "driver", "endpoint": s3.endpoint_url, "arrived_without_keys": True,
                   "creds": "env (static)", "nice": os.nice(0)}
    assert storage.read_bytes(f"s3://{bucket}/from-worker.txt") == b"worker"
    assert ray.cluster_resources().get("CPU") == 2
