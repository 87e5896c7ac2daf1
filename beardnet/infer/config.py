"""Typed configuration of the batch transform job (`beardnet transform --config FILE --set k=v`).

Sections (TOML tables or YAML mappings); an unknown key is an error naming its path:

- ``job``: what to transform: ``input`` / ``output`` prefixes, ``model`` artifact, target
  ``style`` or a ``style_map`` (Parquet/CSV of key -> style), ``incremental``, extensions,
  what to do with photos without faces, the lease, a key ``limit`` (tests, trials).
- ``image``: per-photo knobs: JPEG quality, minimum face size, pixel limit (decompression
  bombs), face locator, feathering of the paste-back.
- ``ray``: the pipeline's parallelism: CPUs per read/locate task, network actors and their CPUs,
  crops per network batch (also photos per actor call, and so rows per manifest part), keys per
  input block, progress bar, custom Ray resources placing the actors and tasks on chosen nodes.
- ``s3``: endpoint, region, profile, server-side encryption (fall back to the ``AWS_*``
  environment; credentials come from the AWS credential chain, never from here).

The CLI flags (``--input``, ``--output``, ``--model``, ``--style``, ...) are shortcuts for
``--set job.<name>=...``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from beardnet.config import S3Section, check_custom_resources
from beardnet.infer.keys import normalize_extensions

#: Everything the codec can write back in the same format.
DEFAULT_EXTENSIONS: list[str] = [
    ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class JobSection(_Section):
    """Input, output, model and style; incremental runs and the lease."""

    input: str = Field("", description="input prefix (s3://bucket/prefix/, file:///dir, or path)")
    output: str = Field("", description="output prefix; outputs keep the input's relative keys")
    model: str | None = Field(None, description="model artifact URI; None = the shipped model")
    style: str | None = Field("full_beard", description="target style for every photo")
    style_map: str | None = Field(
        None, description="Parquet or CSV with columns key, style (keys relative to input)"
    )
    incremental: bool = Field(
        False, description="skip keys already done with the same version, model and style"
    )
    extensions: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    key_list: str | None = Field(
        None, description="list keys from this CSV/Parquet (S3 Inventory-style: bucket, key, "
        "size, etag) instead of listing the input"
    )
    list_threads: int = Field(16, ge=1, description="threads listing input prefixes at once")
    on_no_face: Literal["copy", "skip"] = Field(
        "copy", description="photos without a usable face: copy through, or write nothing"
    )
    record_skipped: bool = Field(
        False, description="write skipped_existing rows for keys an incremental run skips"
    )
    limit: int | None = Field(None, ge=1, description="process at most this many keys")
    lease_ttl_s: float = Field(
        600.0, gt=0, description="lease expiry; renewed every ttl/6, writes stop ttl/3 after a loss"
    )
    no_lease: bool = Field(
        False, description="run without the output lease (a store without conditional writes)"
    )
    run_id: str | None = Field(None, description="run id (default: UTC time + random suffix)")

    @field_validator("extensions")
    @classmethod
    def _exts(cls, v: list[str]) -> list[str]:
        out = list(normalize_extensions(v))
        if not out:
            raise ValueError("at least one extension is needed")
        return out

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, v: str | None) -> str | None:
        if v is not None and (not v or not all(c.isalnum() or c in "-_." for c in v)):
            raise ValueError("run_id: letters, digits, '-', '_' and '.' only")
        return v


class ImageSection(_Section):
    """Per-photo processing."""

    jpeg_quality: int = Field(92, ge=1, le=100)
    png_compress_level: int = Field(
        4, ge=0, le=9, description="zlib level of PNG outputs (6, PIL's default: 1.8x the CPU)"
    )
    min_face_px: int = Field(48, ge=1, description="faces narrower than this are left alone")
    max_pixels: int = Field(50_000_000, ge=1, description="refuse larger photos (bombs)")
    max_faces: int | None = Field(None, ge=1, description="edit at most this many faces/photo")
    faces: Literal["mediapipe", "haar"] = "mediapipe"
    feather_px: float | None = Field(None, ge=0, description="edge feathering (None = default)")
    isolate: bool = Field(
        True, description="pixel work in a watchdog child process per worker (poison photos)"
    )
    photo_timeout_s: float = Field(
        300.0, gt=0, description="per-photo limit for decode+locate and paste+encode (each)"
    )


class RaySection(_Section):
    """Parallelism of the Ray Data pipeline."""

    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray (None = all)")
    object_store_mb: int = Field(512, ge=64)
    read_num_cpus: float = Field(0.5, gt=0, description="CPUs per read+decode+locate task")
    read_batch_size: int = Field(8, ge=1, description="photos per read+locate batch")
    read_memory_mb: int = Field(
        1024, ge=1,
        description="memory Ray reserves per read+decode+locate task (a 24 MP photo's task "
        "peaked at ~1.1-1.2 GB with its sandbox child; see beardnet.infer.pipeline)",
    )
    network_actors: int = Field(1, ge=1, description="network actors (each loads the model)")
    network_num_cpus: float | None = Field(
        None, gt=0,
        description="CPUs per network actor (None: sized from the network's measured share of "
        "the work, see beardnet.infer.sizing)",
    )
    network_batch_size: int = Field(
        32, ge=1,
        description="crops per forward pass, and photos per actor call (= per manifest part)",
    )
    torch_threads: int | None = Field(
        None, ge=1, description="None = network_num_cpus, rounded, at least 1"
    )
    write_num_cpus: float = Field(0.5, gt=0, description="CPUs per paste+encode+write task")
    block_rows: int = Field(64, ge=1, description="keys per input block (read/locate task)")
    progress: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: a progress bar on a terminal, none when CI is set"
    )
    network_resources: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources each network actor needs (placement, e.g. {gpu_node "
        "= 1} puts the actors only on nodes started with --resources='{\"gpu_node\": N}')",
    )
    task_resources: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources each read/locate and paste/write task needs",
    )

    @field_validator("network_resources", "task_resources")
    @classmethod
    def _resources(cls, v: dict[str, float]) -> dict[str, float]:
        return check_custom_resources(v)


class TransformConfig(_Section):
    """The whole transform job configuration."""

    job: JobSection = Field(default_factory=JobSection)
    image: ImageSection = Field(default_factory=ImageSection)
    ray: RaySection = Field(default_factory=RaySection)
    s3: S3Section = Field(default_factory=S3Section)

    @model_validator(mode="after")
    def _style(self) -> TransformConfig:
        if not self.job.style and not self.job.style_map:
            raise ValueError("job: give a style or a style_map")
        return self

    def check_paths(self) -> None:
        """Raise ValueError unless input and output are set (called when the job starts)."""
        missing = [n for n in ("input", "output") if not getattr(self.job, n)]
        if missing:
            raise ValueError("job: " + ", ".join(f"{n} is required" for n in missing))

    def public_dict(self) -> dict:
        """The config as plain data for the run summary, secrets left out."""
        d = self.model_dump(mode="json")
        s3 = d.get("s3", {})
        for k in list(s3):
            if "secret" in k or "access_key" in k or "token" in k:
                s3[k] = "***" if s3[k] else None
        return d
