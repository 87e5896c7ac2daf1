"""Model artifact: a folder, local or on S3, with ``model.safetensors`` (or a
``weights_only`` torch state dict ``model.pt``) and ``model.json``.

``model.json`` holds ``architecture`` (class name), ``kwargs`` (constructor arguments),
``input_size``, ``categories``, ``training`` (config), ``metrics``, ``beardnet_version``,
``weights`` (file name) and ``model_id`` (first 12 hex digits of the SHA-256 of the weights file
and the architecture). Loading never unpickles: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from beardnet.categories import DEFAULT, Categories

if TYPE_CHECKING:
    from beardnet.storage import S3Settings

ARCHITECTURES = {"BeardNet"}
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"


class ArtifactError(RuntimeError):
    """A model artifact that is missing, incomplete or inconsistent."""


@dataclass
class LoadedModel:
    """A loaded artifact: the network in eval mode plus its description."""

    net: torch.nn.Module
    meta: dict[str, Any]
    categories: Categories = field(default_factory=lambda: DEFAULT)
    input_size: int = 128
    model_id: str = ""


def _build(architecture: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    if architecture not in ARCHITECTURES:
        raise ArtifactError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    from beardnet.model.unet import BeardNet

    return BeardNet(**kwargs)


def _join(base: str, name: str) -> str:
    from beardnet import storage

    return storage.join(base, name)


def save_artifact(
    net: torch.nn.Module,
    uri: str,
    meta: dict[str, Any] | None = None,
    *,
    s3: S3Settings | None = None,
) -> dict[str, Any]:
    """Write ``model.safetensors`` + ``model.json`` under ``uri``; returns the written meta.

    ``meta`` may carry ``categories`` (names), ``training``, ``metrics`` and anything else; the
    architecture, kwargs, input size, version and model id are filled in here.
    """
    from safetensors.torch import save as st_save

    from beardnet import __version__, storage

    module = getattr(net, "module", net)  # unwrap DDP
    config = getattr(module, "config", None)
    if config is None:
        raise ArtifactError("save_artifact: the network has no .config (constructor kwargs)")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    blob = st_save(state)
    meta = dict(meta or {})
    cats = list(meta.get("categories") or DEFAULT.names)
    if len(cats) != config.get("categories", len(cats)):
        raise ArtifactError(
            f"save_artifact: {len(cats)} category names but the net has {config['categories']}"
        )
    arch = type(module).__name__
    h = hashlib.sha256(blob)
    h.update(json.dumps({"architecture": arch, "kwargs": config}, sort_keys=True).encode())
    meta.update(
        {
            "architecture": arch,
            "kwargs": config,
            "input_size": int(meta.get("input_size") or config.get("size", 128)),
            "categories": cats,
            "training": meta.get("training", {}),
            "metrics": meta.get("metrics", {}),
            "beardnet_version": __version__,
            "weights": "model.safetensors",
            "model_id": h.hexdigest()[:12],
        }
    )
    storage.write_bytes(_join(uri, "model.safetensors"), blob, s3=s3)
    storage.write_bytes(
        _join(uri, "model.json"), json.dumps(meta, indent=2, sort_keys=True).encode(), s3=s3
    )
    return meta


def load(uri: str | None = None, *, s3: S3Settings | None = None, device: str = "cpu") -> LoadedModel:
    """Load an artifact folder (local path, ``file://`` or ``s3://``); ``None`` loads the shipped
    model from ``beardnet/models/default/``. Raises :class:`ArtifactError` with the reason."""
    from beardnet import storage

    if uri is None:
        if not (DEFAULT_MODEL_DIR / "model.json").is_file():
            raise ArtifactError(
                f"no shipped model at {DEFAULT_MODEL_DIR} (train one and save it there, or pass "
                "--model URI)"
            )
        uri = str(DEFAULT_MODEL_DIR)
    try:
        meta = json.loads(storage.read_bytes(_join(uri, "model.json"), s3=s3))
    except FileNotFoundError:
        raise ArtifactError(f"no model.json under {uri}") from None
    except (OSError, ValueError) as e:
        if "No such" in str(e) or "not found" in str(e).lower() or "NoSuchKey" in str(e):
            raise ArtifactError(f"no model.json under {uri}") from None
        raise
    for key in ("architecture", "kwargs", "categories"):
        if key not in meta:
            raise ArtifactError(f"{uri}/model.json lacks {key!r}")
    net = _build(meta["architecture"], dict(meta["kwargs"]))
    weights = meta.get("weights", "model.safetensors")
    try:
        blob = storage.read_bytes(_join(uri, weights), s3=s3)
    except (FileNotFoundError, OSError) as e:
        raise ArtifactError(f"cannot read weights {weights} under {uri}: {e}") from None
    if weights.endswith(".safetensors"):
        from safetensors.torch import load as st_load

        state = st_load(blob)
    else:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ArtifactError(f"{weights} is not a state dict")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"weights under {uri} do not fit {meta['architecture']}: {e}") from None
    net.to(device).eval()
    cats = Categories(tuple(meta["categories"]))
    return LoadedModel(
        net=net,
        meta=meta,
        categories=cats,
        input_size=int(meta.get("input_size", 128)),
        model_id=str(meta.get("model_id", "")),
    )
