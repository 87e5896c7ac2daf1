"""Typed configuration of the training job (`beardnet train --config FILE --set k=v`).

Sections (TOML tables or YAML mappings), every unknown key is an error naming its path:

- ``data``: the crop set (``uri``: folder or ``manifest.parquet``), the categories, the
  **category ratio** used to acquire the training rows (claim 2a) and the input size.
- ``model``: keyword arguments of :class:`beardnet.model.BeardNet` (checked when the job starts).
- ``loss``: keyword arguments of ``beardnet.train.step.LossConfig``; ``area_weighting`` turns the
  area-ratio weighting (claim 2c) on or off.
- ``train``: the **sampling ratio** of every batch (``per_batch``, claim 2b), batches per epoch,
  epochs or total steps, optimiser, schedule, EMA, checkpoints, seed, resume.
- ``scaling``: Ray Train workers, CPUs per worker, GPU, failures tolerated, custom resources
  per worker (placement on chosen nodes).
- ``run``: where the run folder lives (local path or ``s3://``) and its name.
- ``s3``: endpoint and keys (fall back to the ``AWS_*`` environment).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from beardnet.categories import DEFAULT_CATEGORIES, Categories, RatioError, parse_ratio
from beardnet.config import S3Section, StrictModel, check_custom_resources

RatioSpec = str | dict[str, float] | list[float]


class _Section(StrictModel):
    """Unknown keys are errors."""


class DataSection(_Section):
    """Training data and the category ratio of acquisition (claim 2a)."""

    uri: str = Field("", description="crop set folder or its manifest.parquet (local or s3://)")
    extra_uris: list[str] = Field(
        default_factory=list,
        description="more crop sets (same contract) whose rows join data.uri's, e.g. composite "
        "real-skin pairs from `beardnet synth --mode composite`",
    )
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    ratio: RatioSpec | None = Field(
        None, description="category ratio of the acquired training set; None = every train row"
    )
    total: int | None = Field(
        None, ge=1, description="rows to acquire (None = most the data allows)"
    )
    allow_oversample: bool = False
    train_split: str = "train"
    val_split: str = "val"
    val_samples: int = Field(100, ge=0, description="validation pairs scored per epoch (rank 0)")
    size: int = Field(128, ge=16, le=1024, description="crop side the model works at")
    augment: bool = True
    self_pair_share: float = Field(
        0.1, ge=0, le=1, description="share of pairs whose source is the target itself"
    )
    degrade: float = Field(
        0.0, ge=0, le=1,
        description="share of pairs made to look like a small face in a JPEG photo (both sides)",
    )
    loader_workers: int = Field(0, ge=0, description="torch DataLoader worker processes")
    cache_items: int = Field(4096, ge=0, description="decoded images/masks cached per worker")

    @field_validator("categories")
    @classmethod
    def _cats(cls, v: list[str]) -> list[str]:
        Categories(tuple(v))
        return v

    @model_validator(mode="after")
    def _ratio(self) -> DataSection:
        if self.ratio is not None:
            try:
                parse_ratio(self.ratio, self.cats, field="data.ratio")
            except RatioError as e:
                raise ValueError(str(e)) from None
        return self

    @property
    def cats(self) -> Categories:
        return Categories(tuple(self.categories))

    def ratio_dict(self) -> dict[str, float] | None:
        return (
            None if self.ratio is None else parse_ratio(self.ratio, self.cats, field="data.ratio")
        )


class TrainSection(_Section):
    """Batches (sampling ratio, claim 2b), optimisation, checkpoints and resume."""

    per_batch: RatioSpec = Field(
        "none:2,stubble:2,mustache:2,goatee:2,full_beard:2",
        description="images per category in every batch (integers), or shares with batch_size",
    )
    batch_size: int | None = Field(None, ge=1, description="needed when per_batch holds shares")
    shuffle: bool = Field(
        False, description="ablation baseline: plain shuffled batches, no sampling ratio"
    )
    num_batches: int = Field(
        100, ge=1, description="batches per epoch over all ranks (each rank gets 1/world of them)"
    )
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (overrides)")
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="safety stop on training wall time (the LR schedule follows steps only)",
    )
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(50, ge=0)
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    grad_clip: float | None = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1, description="0 turns EMA off")
    seed: int = 0
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints")
    log_every: int = Field(20, ge=1, description="steps between progress lines")
    resume_from: str | None = Field(
        None, description="checkpoint folder or run folder (URI) to continue from"
    )
    init_from: str | None = Field(
        None,
        description="model artifact folder (URI; 'default' = the shipped model) whose weights "
        "start a new run (fine-tuning: optimiser, step and schedule start fresh)",
    )
    fail_at_step: int | None = Field(
        None, ge=1, description="TEST ONLY: rank 1 (or 0 alone) exits once at this step"
    )
    fail_marker: str | None = Field(
        None, description="TEST ONLY: file or s3:// object that makes the fail one-off"
    )
    record_batches: str | None = Field(
        None, description="diagnostics: folder/URI where every rank records each batch it trains"
    )

    @model_validator(mode="after")
    def _steps(self) -> TrainSection:
        if self.checkpoint_every <= 0:
            raise ValueError("train.checkpoint_every must be >= 1")
        return self

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Optimiser steps per epoch on each rank (one batch per rank per step)."""
        return max(1, self.num_batches // world_size)

    def total_steps(self, world_size: int = 1) -> int:
        """Optimiser steps of the whole run: ``max_steps`` or ``epochs`` full epochs."""
        if self.max_steps is not None:
            return self.max_steps
        return self.epochs * self.steps_per_epoch(world_size)

    def per_batch_counts(self, categories: Categories) -> dict[str, int]:
        """The sampling ratio as integer counts per batch; exact or a clear error."""
        try:
            shares = parse_ratio(self.per_batch, categories, field="train.per_batch")
        except RatioError as e:
            raise ValueError(str(e)) from None
        integral = all(float(v).is_integer() for v in shares.values())
        total = sum(shares.values())
        if integral and (self.batch_size is None or self.batch_size == int(total)):
            return {k: int(v) for k, v in shares.items()}
        if self.batch_size is None:
            raise ValueError(
                "train.per_batch: shares that are not whole counts need train.batch_size"
            )
        counts = {k: v / total * self.batch_size for k, v in shares.items()}
        bad = {k: round(c, 3) for k, c in counts.items() if abs(c - round(c)) > 1e-6}
        if bad:
            raise ValueError(
                f"train.per_batch: shares do not divide batch_size {self.batch_size} exactly "
                f"(per-category counts would be {bad})"
            )
        return {k: round(c) for k, c in counts.items()}


class ScalingSection(_Section):
    """Ray Train scaling and fault tolerance."""

    num_workers: int = Field(1, ge=1)
    cpus_per_worker: int = Field(1, ge=1, description="also torch threads per worker")
    use_gpu: bool = False
    max_failures: int = Field(2, ge=-1, description="worker failures to recover from (-1 = any)")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources each worker needs besides its CPUs (placement, e.g. "
        "{node2 = 1} puts workers only on nodes started with --resources='{\"node2\": N}')",
    )

    @field_validator("resources_per_worker")
    @classmethod
    def _resources(cls, v: dict[str, float]) -> dict[str, float]:
        return check_custom_resources(v)


class RunSection(_Section):
    """Where the run folder lives."""

    storage: str = Field("~/beardnet-runs", description="local folder or s3://bucket/prefix")
    name: str = Field("beardnet-train", pattern=r"^[A-Za-z0-9._-]+$")
    checkpoints_to_keep: int = Field(2, ge=1)
    progress: Literal["auto", "on", "off"] = "auto"

    @field_validator("progress", mode="before")
    @classmethod
    def _yaml_bool(cls, v: Any) -> Any:
        # `--set run.progress=off` arrives as YAML False
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


class TrainConfig(_Section):
    """The whole training job."""

    data: DataSection = Field(default_factory=DataSection)
    model: dict[str, Any] = Field(default_factory=dict)
    loss: dict[str, Any] = Field(default_factory=lambda: {"area_weighting": True})
    train: TrainSection = Field(default_factory=TrainSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    run: RunSection = Field(default_factory=RunSection)
    s3: S3Section = Field(default_factory=S3Section)

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: dict[str, Any]) -> dict[str, Any]:
        from pydantic import ValidationError

        from beardnet.train.step import LossConfig

        try:
            LossConfig.model_validate(v)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            raise ValueError(f"{where}: {first.get('msg')}") from None
        return v

    @model_validator(mode="after")
    def _cross(self) -> TrainConfig:
        self.train.per_batch_counts(self.data.cats)  # raises naming train.per_batch
        if self.train.num_batches < self.scaling.num_workers:
            raise ValueError("train.num_batches must be >= scaling.num_workers")
        total = self.train.total_steps(self.scaling.num_workers)
        if self.train.fail_at_step is not None and self.train.fail_at_step > total:
            raise ValueError("train.fail_at_step is past the last step")
        return self

    def batch_counts(self) -> dict[str, int]:
        return self.train.per_batch_counts(self.data.cats)

    def batch_size(self) -> int:
        return sum(self.batch_counts().values())

    def run_uri(self) -> str:
        """URI of the run folder: ``run.storage/run.name``."""
        import os

        base = self.run.storage
        if "://" not in base:
            base = os.path.abspath(os.path.expanduser(base))
        return base.rstrip("/") + "/" + self.run.name


def load_train_config(path: str | None, sets: list[str] | None = None) -> TrainConfig:
    """Load a :class:`TrainConfig` from a TOML/YAML file plus ``--set`` overrides."""
    from beardnet.config import load_config

    return load_config(TrainConfig, path, list(sets or []))
