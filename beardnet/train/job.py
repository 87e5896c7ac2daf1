"""The training job: a Ray Train ``TorchTrainer`` around :mod:`beardnet.train.loop`.

``run_training(cfg, s3)`` starts (or joins) Ray, checks the data in the driver (so a bad
manifest or ratio fails before any worker starts), and runs ``scaling.num_workers`` workers
(``cpus_per_worker`` CPUs and torch threads each; DDP over gloo on CPU, nccl on GPU). The run
folder is ``run.storage/run.name`` (local or S3 through a pyarrow filesystem from
:mod:`beardnet.storage`); Ray Train keeps the latest ``run.checkpoints_to_keep`` checkpoints
there. ``FailureConfig(max_failures)`` restarts the workers from the latest checkpoint when one
dies; starting the same run (same storage and name) again continues it from its latest
checkpoint too. The finished model artifact (EMA weights) is written to ``RUN/model/``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from beardnet.storage import S3Settings
from beardnet.train.config import TrainConfig


@dataclass
class TrainResult:
    """What a finished training run left behind."""

    run_uri: str
    model_uri: str
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    error: str | None = None
    seconds: float = 0.0
    acquisition: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def progress_enabled(mode: str) -> bool:
    """``on``/``off``, or ``auto``: on in a terminal unless ``CI`` is set."""
    if mode != "auto":
        return mode == "on"
    return sys.stdout.isatty() and not os.environ.get("CI")


def _storage(cfg: TrainConfig, s3: S3Settings) -> tuple[str, Any]:
    """(storage_path, storage_filesystem or None) for Ray's RunConfig."""
    from beardnet import storage

    base = cfg.run.storage
    if storage.is_s3(base):
        fs, path = storage.resolve(base.rstrip("/"), s3)
        return path, fs
    path = storage.local_path(base)
    os.makedirs(path, exist_ok=True)
    return path, None


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with relative local paths (data, extra sets, init model, resume point) made
    absolute against this process's folder: Ray Train workers run in folders of their own."""
    from beardnet import storage

    def fix(uri: str | None) -> str | None:
        if not uri or uri == "default" or storage.is_s3(uri) or "://" in uri:
            return uri
        return os.path.abspath(os.path.expanduser(uri))

    data = cfg.data.model_copy(update={"uri": fix(cfg.data.uri),
                                       "extra_uris": [fix(u) for u in cfg.data.extra_uris]})
    train = cfg.train.model_copy(update={"init_from": fix(cfg.train.init_from),
                                         "resume_from": fix(cfg.train.resume_from)})
    return cfg.model_copy(update={"data": data, "train": train})


def check_data(cfg: TrainConfig, s3: S3Settings) -> dict[str, Any]:
    """Build the training set once in the driver (manifest, acquisition, sampler) so that
    problems show before Ray starts; returns the acquisition report."""
    from beardnet.train.data import build_sampler, build_training_set

    ds, report = build_training_set(cfg, s3)
    build_sampler(cfg, ds, 0, cfg.scaling.num_workers)
    if cfg.train.init_from:
        check_init(cfg, s3)
    return report


def check_init(cfg: TrainConfig, s3: S3Settings) -> None:
    """``train.init_from`` loads and fits the configured network, else ValueError naming it."""
    from beardnet.model import BeardNet, load
    from beardnet.model.artifact import ArtifactError

    uri = cfg.train.init_from
    try:
        init = load(None if uri == "default" else uri, s3=s3)
    except ArtifactError as e:
        raise ValueError(f"train.init_from: {e}") from None
    net = BeardNet(categories=len(cfg.data.cats), size=cfg.data.size, **cfg.model)
    try:
        net.load_state_dict(init.net.state_dict())
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise ValueError(
            f"train.init_from: {uri} does not fit this config's network (model section, "
            f"data.size, data.categories): {first}"
        ) from None


def check_resources(cfg: TrainConfig, cluster: dict[str, float]) -> None:
    """``scaling.resources_per_worker`` must exist in the cluster (``ray.cluster_resources()``)
    for every worker, else ValueError naming it (Ray Train would wait for a node that never
    comes)."""
    n = cfg.scaling.num_workers
    for name, amount in cfg.scaling.resources_per_worker.items():
        have = float(cluster.get(name, 0.0))
        if have + 1e-9 < amount * n:
            raise ValueError(
                f"scaling.resources_per_worker: {name}={amount:g} x {n} workers but the "
                f"cluster has {have:g} of {name!r}"
            )


def run_training(
    cfg: TrainConfig, s3: S3Settings | None = None, progress: bool | None = None
) -> TrainResult:
    """Run the training job described by ``cfg``; see the module docstring."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from beardnet.raysession import init_ray, worker_env
    from beardnet.train.loop import train_loop_per_worker

    s3 = s3 or cfg.s3.settings()
    t0 = time.time()
    cfg = absolute_paths(cfg)
    report = check_data(cfg, s3)
    init_ray(s3=s3)
    import ray

    check_resources(cfg, ray.cluster_resources())
    storage_path, fs = _storage(cfg, s3)
    run_uri = cfg.run_uri()
    if progress is None:
        progress = progress_enabled(cfg.run.progress)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg, "run_uri": run_uri, "progress": progress, "s3": s3},
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={
                "CPU": cfg.scaling.cpus_per_worker, **cfg.scaling.resources_per_worker
            },
        ),
        run_config=RunConfig(
            name=cfg.run.name,
            storage_path=storage_path,
            storage_filesystem=fs,
            failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.checkpoints_to_keep),
            worker_runtime_env={"env_vars": worker_env(s3)},
        ),
    )
    error = None
    try:
        result = trainer.fit()
        metrics = dict(result.metrics or {})
        ckpt = result.checkpoint.path if result.checkpoint is not None else None
        if result.error is not None:
            error = str(result.error)
    except Exception as e:  # noqa: BLE001 - TrainingFailedError and friends: report, not crash
        metrics, ckpt, error = {}, None, f"{type(e).__name__}: {e}"
    return TrainResult(
        run_uri=run_uri,
        model_uri=run_uri.rstrip("/") + "/model",
        metrics=metrics,
        checkpoint=ckpt,
        error=error,
        seconds=round(time.time() - t0, 1),
        acquisition=report,
    )


def demo_config(data_uri: str, run_uri: str, steps: int = 60) -> TrainConfig:
    """A short 2-worker run for the demo: 10-image batches (2 per style), checkpoints every
    ``steps // 2`` steps, 64 validation pairs."""
    from beardnet import storage

    if storage.is_s3(run_uri):
        base = run_uri.rstrip("/").rsplit("/", 1)
        storage_base, name = base[0], base[1]
    else:
        p = storage.local_path(run_uri)
        storage_base, name = os.path.dirname(p), os.path.basename(p)
    return TrainConfig.model_validate(
        {
            "data": {"uri": data_uri, "val_samples": 64},
            "train": {
                "per_batch": "none:2,stubble:2,mustache:2,goatee:2,full_beard:2",
                "num_batches": 2 * steps,
                "epochs": 1,
                "lr": 2e-3,
                "warmup_steps": 10,
                "checkpoint_every": max(1, steps // 2),
                "log_every": 10,
            },
            "scaling": {"num_workers": 2, "cpus_per_worker": 1, "max_failures": 1},
            "run": {"storage": storage_base, "name": name},
        }
    )


def demo_train(data_uri: str, run_uri: str, s3: S3Settings | None = None, steps: int = 60) -> str:
    """Train briefly with 2 Ray Train workers (checkpoints under ``run_uri``); returns the
    model artifact URI. Raises ``RuntimeError`` if the run failed."""
    res = run_training(demo_config(data_uri, run_uri, steps), s3)
    if not res.ok:
        raise RuntimeError(f"demo training failed: {res.error}")
    return res.model_uri
