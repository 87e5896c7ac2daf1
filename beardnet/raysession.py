"""Start or join Ray the same way everywhere.

:func:`init_ray` joins ``RAY_ADDRESS`` when set, else starts a local Ray without dashboard,
with a bounded object store and its workers at the driver's priority. Non-secret S3 settings
(endpoint, region, profile) and ``PYTHONPATH`` (so workers import this project) reach workers
through ``runtime_env`` env vars; credentials never do: each worker resolves them in its own
environment (boto3's chain: env from a Secret, pod identity, instance role, ...). Workers of a
local Ray inherit the driver's environment. Switches such as ``RAY_AUTH_MODE`` or
``AWS_EC2_METADATA_DISABLED`` are the caller's business (the test harness sets them), never
this module's.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from beardnet.storage import S3Settings

log = logging.getLogger(__name__)

#: Niceness of a local Ray's workers relative to the driver (Ray's own default is 15).
LOCAL_WORKER_NICENESS = 0
#: Set in the driver (when unset) and passed to every worker: no usage reporting.
SAFE_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def project_root() -> str:
    """The folder holding the ``beardnet`` package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker_env(s3: S3Settings | None = None) -> dict[str, str]:
    """Env vars every Ray worker gets: no usage stats, endpoint/region/profile (never a
    credential), ``PYTHONPATH``."""
    env = {k: os.environ.get(k, v) for k, v in SAFE_ENV.items()}
    env.update((s3 or S3Settings.from_env()).to_env())
    paths = [project_root()]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def init_ray(
    num_cpus: int | None = None,
    object_store_mb: int = 512,
    s3: S3Settings | None = None,
    **kwargs: Any,
) -> Any:
    """Connect to ``RAY_ADDRESS`` or start a local Ray; a no-op when Ray is already up.

    ``num_cpus`` defaults to ``os.cpu_count()``; ``object_store_mb`` bounds the local object
    store. Extra ``kwargs`` go to ``ray.init``. Returns Ray's context (None if already up).
    """
    for k, v in SAFE_ENV.items():
        os.environ.setdefault(k, v)
    import ray

    if ray.is_initialized():
        return None
    runtime_env = {"env_vars": worker_env(s3)}
    extra = dict(kwargs)
    if "runtime_env" in extra:
        user = dict(extra.pop("runtime_env") or {})
        env_vars = {**runtime_env["env_vars"], **(user.pop("env_vars", None) or {})}
        runtime_env = {**user, "env_vars": env_vars}
    job_cfg = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if job_cfg:  # a submitted job: its own runtime env wins; a clashing env var would fail
        import json

        try:
            job_env = (json.loads(job_cfg).get("runtime_env") or {}).get("env_vars") or {}
        except ValueError:
            job_env = {}
        runtime_env["env_vars"] = {
            k: v for k, v in runtime_env["env_vars"].items() if k not in job_env
        }
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray at %s", address)
        return ray.init(address=address, runtime_env=runtime_env, **extra)
    cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
    extra.setdefault("include_dashboard", False)
    # Ray renices its workers to 15 by default: on a shared or busy machine they then lose the
    # CPU to everything else (the driver, Ray's own daemons), and a job runs slower than the
    # plain loop it replaces. A local Ray's workers keep this process's priority (``nice
    # beardnet ...`` still lowers all of it); a joined cluster's setting is its own.
    system_config = dict(extra.pop("_system_config", None) or {})
    system_config.setdefault("worker_niceness", LOCAL_WORKER_NICENESS)
    extra["_system_config"] = system_config
    extra.setdefault("log_to_driver", True)
    log.info("starting local Ray: %s CPUs, %s MiB object store", cpus, object_store_mb)
    return ray.init(
        num_cpus=cpus,
        object_store_memory=int(object_store_mb) * 1024 * 1024,
        runtime_env=runtime_env,
        **extra,
    )


def shutdown_ray() -> None:
    """Shut Ray down if this process started or joined it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
