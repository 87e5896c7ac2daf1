"""Job-level failures of the transform and the CLI's exit codes."""

from __future__ import annotations

from beardnet.infer import lease as _lease

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STORAGE = 3
EXIT_MODEL = 4
EXIT_LEASE = 75
#: The run lost its output lease mid-run and stopped writing (see beardnet.infer.fence).
EXIT_LEASE_LOST: int = _lease.EXIT_LEASE_LOST
EXIT_CODES = {
    "ok": EXIT_OK,
    "failed": EXIT_FAILED,
    "config": EXIT_CONFIG,
    "storage": EXIT_STORAGE,
    "model": EXIT_MODEL,
    "lease": EXIT_LEASE,
    "lease_lost": EXIT_LEASE_LOST,
}


class TransformFailed(RuntimeError):
    """A job-level failure (nothing or not everything could run); ``exit_code`` for the CLI."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code



def short_error(e: BaseException) -> str:
    code = getattr(e, "response", {}).get("Error", {}).get("Code")
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{code}: {msg}" if code else f"{type(e).__name__}: {msg}"


