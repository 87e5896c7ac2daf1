"""Where S3 is (:class:`S3Settings`) and clients on the credentials boto3 resolves.

**Credentials** are never read here: boto3's own chain finds them (``AWS_*`` variables including
``AWS_SESSION_TOKEN``, shared config/credentials files and profiles, SSO, assume-role, web
identity, container and instance metadata) and refreshes temporary ones. pyarrow's
``S3FileSystem`` is built from the same resolved (frozen) credentials, session token included,
and rebuilt when they refresh. :class:`S3Settings` carries only *where* S3 is (endpoint, region,
profile) and how objects are written (server-side encryption); explicit keys are for tests and
the local server, are hidden from ``repr`` and are dropped when settings are pickled (Ray task
arguments): every process resolves credentials in its own environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beardnet.retry import MAX_ATTEMPTS, attempts, error_code

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow.fs

DEFAULT_REGION = "us-east-1"
#: Server-side encryption modes: SSE-S3 and SSE-KMS.
SSE_MODES = ("AES256", "aws:kms")
#: Variables that change what boto3's credential chain resolves (a change means a new session).
_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_DISABLED",
)


@dataclass(frozen=True)
class S3Settings:
    """Where S3 is and how objects are written; credentials come from boto3's chain.

    ``profile`` names a profile of the shared config files (else ``AWS_PROFILE`` or the
    default). ``access_key_id``/``secret_access_key``/``session_token`` are explicit static
    credentials (tests, the local server): hidden from ``repr`` and not pickled. ``sse`` is
    ``"AES256"`` (SSE-S3) or ``"aws:kms"`` (SSE-KMS, optional ``sse_kms_key_id``) for puts.
    """

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    scheme: str | None = None
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None

    def __post_init__(self) -> None:
        if self.scheme is None:
            scheme = "https"
            if self.endpoint_url and "://" in self.endpoint_url:
                scheme = self.endpoint_url.split("://", 1)[0].lower()
            object.__setattr__(self, "scheme", scheme)
        if not self.region:
            object.__setattr__(self, "region", DEFAULT_REGION)
        if self.sse is not None and self.sse not in SSE_MODES:
            raise ValueError(f"sse: {self.sse!r} is not one of {', '.join(SSE_MODES)} or None")
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ValueError("sse_kms_key_id: needs sse='aws:kms'")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle without secrets: the receiving process resolves its own credentials."""
        return (_rebuild, (dataclasses.asdict(self.public()),))

    def public(self) -> S3Settings:
        """These settings without explicit credentials."""
        return dataclasses.replace(
            self, access_key_id=None, secret_access_key=None, session_token=None
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> S3Settings:
        """Read ``AWS_ENDPOINT_URL`` (or ``_S3``) and ``AWS_REGION``/``AWS_DEFAULT_REGION``.

        Credentials are not read here: boto3's chain resolves them when a client is made.
        """
        env = os.environ if environ is None else environ
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        )

    @property
    def endpoint_override(self) -> str | None:
        """The endpoint as pyarrow wants it: ``host:port`` without the scheme."""
        if not self.endpoint_url:
            return None
        ep = self.endpoint_url.split("://", 1)[-1]
        return ep.rstrip("/")

    def to_env(self) -> dict[str, str]:
        """Non-secret variables for other processes (Ray ``runtime_env``): endpoint, region,
        profile. Never credentials."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.profile:
            env["AWS_PROFILE"] = self.profile
        return env

    def put_args(self) -> dict[str, str]:
        """Server-side encryption arguments for ``PutObject``."""
        args: dict[str, str] = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args


def _rebuild(kwargs: dict[str, Any]) -> S3Settings:
    return S3Settings(**kwargs)


@contextlib.contextmanager
def exported_env(s3: S3Settings) -> Iterator[None]:
    """Export ``s3`` (:meth:`S3Settings.to_env` plus its explicit credentials) as ``AWS_*``
    variables for the duration, restored after: for a local test server, whose clients,
    subprocesses and local Ray workers started meanwhile inherit them."""
    values = s3.to_env()
    for name, value in (
        ("AWS_ACCESS_KEY_ID", s3.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key),
        ("AWS_SESSION_TOKEN", s3.session_token),
    ):
        if value:
            values[name] = value
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def create_bucket(name: str, s3: S3Settings | None = None) -> str:
    """Create bucket ``name`` (no error if it exists already); returns ``s3://name``."""
    try:
        attempts(lambda: boto3_client(s3).create_bucket(Bucket=name), f"s3://{name}")
    except Exception as exc:
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return f"s3://{name}"


def _settings(s3: S3Settings | None) -> S3Settings:
    return S3Settings.from_env() if s3 is None else s3


# --------------------------------------------------------------------------- credentials

_lock = threading.RLock()
_sessions: dict[tuple[S3Settings, str], Any] = {}
_clients: dict[tuple[S3Settings, str], Any] = {}
_filesystems: dict[tuple[S3Settings, str], tuple[Any, Any]] = {}


def _reset_after_fork() -> None:
    """Sessions and connection pools must not be shared with a forked child."""
    global _lock
    _lock = threading.RLock()
    _sessions.clear()
    _clients.clear()
    _filesystems.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def _env_fingerprint() -> str:
    """A digest of the variables boto3's chain reads (no secret is kept in clear)."""
    raw = "\0".join(f"{k}={os.environ.get(k, '')}" for k in _CREDENTIAL_ENV)
    return hashlib.sha256(raw.encode()).hexdigest()


def boto3_session(s3: S3Settings | None = None) -> Any:
    """The cached boto3 session for ``s3`` and the current credential environment."""
    st = _settings(s3)
    key = (st, _env_fingerprint())
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            import boto3

            sess = boto3.session.Session(
                profile_name=st.profile,
                aws_access_key_id=st.access_key_id,
                aws_secret_access_key=st.secret_access_key,
                aws_session_token=st.session_token,
                region_name=st.region,
            )
            _sessions[key] = sess
        return sess


def credentials(s3: S3Settings | None = None) -> Any:
    """The resolved credentials now (botocore ``ReadOnlyCredentials``: access key, secret key,
    token; refreshed first when temporary ones are about to expire), or None when the chain
    finds none."""
    creds = boto3_session(s3).get_credentials()
    return None if creds is None else creds.get_frozen_credentials()


def describe_credentials(s3: S3Settings | None = None) -> str:
    """Where the credentials come from, without any secret (for logs and summaries)."""
    creds = boto3_session(s3).get_credentials()
    if creds is None:
        return "none found (anonymous)"
    kind = "temporary" if creds.get_frozen_credentials().token else "static"
    return f"{getattr(creds, 'method', 'unknown')} ({kind})"


def boto3_client(s3: S3Settings | None = None) -> Any:
    """A cached, thread-safe boto3 S3 client (path-style addressing, one attempt per call:
    wrap calls in :func:`attempts` for the retry budget)."""
    st = _settings(s3)
    key = (st, _env_fingerprint())
    with _lock:  # a boto3 session is not thread-safe: make clients under the lock
        client = _clients.get(key)
        if client is None:
            from botocore.config import Config

            client = boto3_session(st).client(
                "s3",
                endpoint_url=st.endpoint_url,
                region_name=st.region,
                config=Config(
                    s3={"addressing_style": "path"},
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                    max_pool_connections=32,
                ),
            )
            _clients[key] = client
        return client


def s3_filesystem(s3: S3Settings | None = None) -> pyarrow.fs.S3FileSystem:
    """A pyarrow ``S3FileSystem`` on the credentials boto3 resolved (session token included),
    rebuilt when they refresh; endpoint, region and scheme always set, at most
    :data:`MAX_ATTEMPTS` attempts per request. Anonymous when the chain finds none."""
    import pyarrow.fs as pafs

    st = _settings(s3)
    creds = credentials(st)
    key = (st, _env_fingerprint())
    with _lock:
        cached = _filesystems.get(key)
        if cached is not None and cached[0] == creds:
            return cached[1]
    kwargs: dict[str, Any] = {"anonymous": True}
    if creds is not None:
        kwargs = {"access_key": creds.access_key, "secret_key": creds.secret_key}
        if creds.token:
            kwargs["session_token"] = creds.token
    fs = pafs.S3FileSystem(
        **kwargs,
        region=st.region,
        scheme=st.scheme,
        endpoint_override=st.endpoint_override,
        connect_timeout=10,
        request_timeout=60,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
    )
    with _lock:
        _filesystems[key] = (creds, fs)
    return fs
