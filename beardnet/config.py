"""Typed job configuration: a TOML or YAML file, then ``--set section.key=value`` overrides.

Each job defines its own pydantic model (deriving from :class:`StrictModel`, so unknown keys
fail) in its own area. :func:`load_config` reads the file (chosen by extension: ``.toml``,
``.yaml``/``.yml``, ``.json``), applies the overrides (values parsed as YAML scalars:
``--set train.lr=0.001``, ``--set data.ratio=none:1,stubble:2``, ``--set s3.endpoint_url=``
for null), validates, and raises :class:`ConfigError` naming the dotted field path.
S3 settings fall back to the ``AWS_*`` environment; credentials are never configured
(:class:`S3Section`).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from beardnet.storage import DEFAULT_REGION, S3Settings

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override that does not fit the job's config model."""


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class S3Section(StrictModel):
    """Where S3 is and how outputs are encrypted; unset fields come from the ``AWS_*``
    environment. Credentials are never configured here: boto3's chain resolves them in each
    process (pick a shared-config profile with ``profile``)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    sse: Literal["AES256", "aws:kms"] | None = None
    sse_kms_key_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in _CREDENTIAL_FIELDS:
                if name in data:
                    raise ValueError(
                        f"{name}: credentials are not read from config; use the AWS credential "
                        "chain (AWS_* variables, a profile, SSO, an instance or pod role)"
                    )
        return data

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> S3Section:
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ValueError("sse_kms_key_id: needs sse = 'aws:kms'")
        return self

    def settings(self) -> S3Settings:
        """Merge with :meth:`S3Settings.from_env` (config wins where set)."""
        env = S3Settings.from_env()
        return S3Settings(
            endpoint_url=self.endpoint_url or env.endpoint_url,
            region=self.region or env.region or DEFAULT_REGION,
            profile=self.profile,
            sse=self.sse,
            sse_kms_key_id=self.sse_kms_key_id,
        )


_CREDENTIAL_FIELDS = ("access_key_id", "secret_access_key", "session_token")

#: Ray resources that have their own config fields (CPUs, GPUs, memory), never custom ones.
_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def check_custom_resources(v: dict[str, float]) -> dict[str, float]:
    """Custom Ray resources for placement (e.g. ``{"node2": 1}``: only nodes started with
    ``--resources='{"node2": N}'`` qualify): names non-empty and not built-in, amounts > 0."""
    for name, amount in v.items():
        if not name or not name.strip():
            raise ValueError("resource names must not be empty")
        if name in _BUILTIN_RESOURCES:
            raise ValueError(f"{name!r} is not a custom resource (it has its own field)")
        if not amount > 0:
            raise ValueError(f"{name!r}: amount must be > 0, got {amount}")
    return v


def read_config_file(path: str) -> dict[str, Any]:
    """Parse a TOML/YAML/JSON config file (local path or any storage URI) into a dict."""
    from beardnet import storage

    try:
        raw = storage.read_bytes(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        elif ext in (".yaml", ".yml", ".json"):
            data = yaml.safe_load(raw.decode("utf-8"))
        else:
            raise ConfigError(f"{path}: unknown config format {ext!r} (use .toml, .yaml or .yml)")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a table/mapping, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=1.5"`` -> ``(["a", "b"], 1.5)``; the value is parsed as a YAML scalar."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    key, _, text = item.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if not parts or any(not p for p in parts):
        raise ConfigError(f"--set {item!r}: bad key {key!r}")
    text = text.strip()
    if text == "":
        return parts, None
    if text.lower() in _YAML11_WORDS:  # YAML 1.1 reads on/off/yes/no as booleans: keep words
        return parts, text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    return parts, value


#: Words YAML 1.1 turns into booleans; in ``--set`` they stay strings (pydantic still accepts
#: them for boolean fields), so ``--set ray.progress=off`` means the word "off".
_YAML11_WORDS = frozenset({"on", "off", "yes", "no", "y", "n"})


def apply_overrides(data: dict[str, Any], sets: Sequence[str] | None) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict (in place; also returned)."""
    for item in sets or []:
        parts, value = parse_override(item)
        node: Any = data
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"--set {item!r}: {where} is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line per problem: ``source: field.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        msg = err.get("msg", "invalid")
        got = err.get("input")
        shown = "" if err.get("type") == "missing" or isinstance(got, dict) else f" (got {got!r})"
        if "secret" in loc:
            shown = ""
        lines.append(f"{source}: {loc}: {msg}{shown}")
    return "\n".join(lines)


def load_config(
    model_cls: type[M], path: str | None = None, sets: Sequence[str] | None = None
) -> M:
    """File (optional) + overrides -> validated ``model_cls``; :class:`ConfigError` on problems."""
    data: dict[str, Any] = read_config_file(path) if path else {}
    apply_overrides(data, sets)
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        source = path or "config"
        if sets:
            source += " (with --set overrides)"
        raise ConfigError(format_validation_error(exc, source)) from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the common ``--config FILE`` and repeatable ``--set key=value`` options."""
    parser.add_argument(
        "--config", metavar="FILE", default=None,
        help="TOML or YAML config file (local path or URI); defaults are built in",
    )
    parser.add_argument(
        "--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="set",
        help="override one config value (YAML scalar), e.g. --set train.epochs=2; repeatable",
    )


def config_from_args(model_cls: type[M], args: argparse.Namespace) -> M:
    """:func:`load_config` with ``args.config`` and ``args.set``."""
    return load_config(model_cls, getattr(args, "config", None), getattr(args, "set", None))
