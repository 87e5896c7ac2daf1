"""Session-wide fixtures: one local S3 server and one Ray session per test run."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

_counter = itertools.count()


@pytest.fixture(scope="session")
def s3() -> Iterator[object]:
    """One SeaweedFS server for the whole run; ``AWS_*`` point at it while it lives."""
    from beardnet.s3server import LocalS3
    from beardnet.storage import exported_env

    server = LocalS3(access_key_id="beardnet-test", secret_access_key="beardnet-test-secret")
    server.start()
    try:
        with exported_env(server.settings):
            yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3) -> str:
    """A fresh, empty, uniquely named bucket on the session server (its name, no scheme)."""
    name = f"t{next(_counter):03d}-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def ray_session(s3) -> Iterator[None]:
    """One local Ray (2 CPUs, 400 MiB object store) for the run, with S3 settings for workers."""
    from beardnet.raysession import init_ray, shutdown_ray

    init_ray(num_cpus=2, object_store_mb=400, s3=s3.settings)
    try:
        yield None
    finally:
        shutdown_ray()
