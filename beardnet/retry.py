"""One retry budget per object: :data:`MAX_ATTEMPTS` attempts across every layer.

botocore clients make a single attempt (:func:`beardnet.s3client.boto3_client`) and pyarrow's
strategy gets the same bound, so :func:`attempts` is the only retry loop around an S3 call.
Transient errors (5xx, connection, timeout) are backed off briefly, throttling (``SlowDown``,
HTTP 503/429) longer, both with full jitter; other errors are raised at once. When the budget
is spent, :class:`GaveUp` names the object, the attempts and the last error, for the caller to
record.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

#: Attempts per object across every layer (botocore, pyarrow, this module).
MAX_ATTEMPTS = 5
#: Backoff (seconds): attempt n sleeps uniformly in [0, min(cap, base * 2**n)].
BACKOFF_BASE_S = 0.2
THROTTLE_BASE_S = 1.0
BACKOFF_CAP_S = 20.0
T = TypeVar("T")

_THROTTLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestThrottled", "ProvisionedThroughputExceededException",
})
_TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
    "500", "502", "504",
})


class GaveUp(RuntimeError):
    """An object operation failed :data:`MAX_ATTEMPTS` times (or with a permanent error after
    retries); ``what`` names the object, ``last`` is the final error."""

    def __init__(self, what: str, tries: int, throttled: int, last: BaseException) -> None:
        super().__init__(
            f"gave up on {what} after {tries} attempts ({throttled} throttled): "
            f"{type(last).__name__}: {last}"
        )
        self.what, self.tries, self.throttled, self.last = what, tries, throttled, last


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` ("" for anything else)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _http_status(exc: BaseException) -> int:
    meta = getattr(exc, "response", {}).get("ResponseMetadata", {})
    return int(meta.get("HTTPStatusCode") or 0)


def is_throttle(exc: BaseException) -> bool:
    """S3 asked us to slow down (``SlowDown``, HTTP 503 or 429)."""
    return error_code(exc) in _THROTTLE_CODES or _http_status(exc) in (429, 503)


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: throttling, 5xx, connection and timeout errors."""
    if is_throttle(exc) or error_code(exc) in _TRANSIENT_CODES or _http_status(exc) >= 500:
        return True
    try:
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )
        from botocore.exceptions import (
            HTTPClientError,
            IncompleteReadError,
            ResponseStreamingError,
        )
    except ImportError:  # pragma: no cover
        return False
    retryable = (BotoConnectionError, HTTPClientError, IncompleteReadError, ResponseStreamingError,
                 ConnectionError, TimeoutError)
    return isinstance(exc, retryable)


def backoff_s(attempt: int, throttled: bool) -> float:
    """Full-jitter backoff before attempt ``attempt + 1`` (throttling waits longer)."""
    base = THROTTLE_BASE_S if throttled else BACKOFF_BASE_S
    return random.uniform(0.0, min(BACKOFF_CAP_S, base * 2**attempt))


def attempts(fn: Callable[[], T], what: str, max_attempts: int = MAX_ATTEMPTS) -> T:
    """Call ``fn`` until it succeeds, at most ``max_attempts`` times; transient errors and
    throttling are backed off with jitter, anything else is raised at once. Raises
    :class:`GaveUp` when the budget is spent."""
    throttled = 0
    for attempt in range(max_attempts):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            throttle = is_throttle(exc)
            throttled += int(throttle)
            if attempt + 1 >= max_attempts:
                raise GaveUp(what, attempt + 1, throttled, exc) from exc
            wait = backoff_s(attempt, throttle)
            log.debug("%s: %s (attempt %d), retrying in %.2fs", what, exc, attempt + 1, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover



def is_precondition(exc: BaseException) -> bool:
    """A conditional request lost (HTTP 412, or 409 ``ConditionalRequestConflict``)."""
    code = error_code(exc)
    return code in ("PreconditionFailed", "ConditionalRequestConflict", "412") or (
        _http_status(exc) == 412
    )


def is_not_found(exc: BaseException) -> bool:
    """The object or bucket does not exist."""
    return error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
