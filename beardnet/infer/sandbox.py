"""A watchdog subprocess for per-photo pixel work, so that no photo can kill or hang a worker.

A native decoder crash, an out-of-memory kill or a hang inside a C library cannot be caught or
interrupted from Python. So the transform's stages run their per-photo pixel work (decode,
locate, paste back, encode) in a child process, one per Ray worker, kept warm between photos
(the face locator is loaded once). The Ray worker only moves bytes:

- the child dies (signal, ``os._exit``, OOM kill): the photo is tried once more in a fresh
  child; if that dies too, :class:`PhotoFailed` with reason ``worker_crash``;
- the child does not answer within ``timeout_s``: it is killed and the photo tried once more;
  then :class:`PhotoFailed` with reason ``timeout``.

Bad input raised in the child (``BadImage`` and the like) comes back as :class:`RemoteError`
with the same ``reason`` and message; it is not retried.

Frames on the pipes are ``8-byte length + pickle``. The child speaks on a duplicate of its
stdout; its file descriptor 1 is pointed at stderr so that library prints cannot corrupt
the protocol.

**Test-only hook**: ``BEARDNET_TEST_POISON="crash=<text>,hang=<text>"`` is read by the job's
driver (never set it in production) and passed to the children: a photo whose key contains
``<text>`` makes the child kill itself with SIGSEGV (``crash``) or sleep forever (``hang``).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

#: Environment variable of the test-only poison hook (see the module docstring).
POISON_ENV = "BEARDNET_TEST_POISON"
#: Seconds a fresh child may take to import its modules and load the face locator.
STARTUP_TIMEOUT_S = 300.0
_HEADER = struct.Struct(">Q")


class PhotoFailed(RuntimeError):
    """The photo's work crashed or hung its process twice; ``reason`` is ``worker_crash`` or
    ``timeout``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class RemoteError(RuntimeError):
    """An exception raised by the work in the child (``reason`` kept from ``BadImage``)."""

    def __init__(self, type_name: str, reason: str | None, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.reason = reason
        self.message = message if reason else f"{type_name}: {message}"


class _ChildGone(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def parse_poison(spec: str | None) -> dict[str, str]:
    """``"crash=a,hang=b"`` -> ``{"crash": "a", "hang": "b"}`` (test-only hook)."""
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            if k.strip() in ("crash", "hang") and v.strip():
                out[k.strip()] = v.strip()
    return out


def _write_frame(f, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=5)
    f.write(_HEADER.pack(len(data)))
    f.write(data)
    f.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None) -> Any:
    (n,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, n, deadline))


class Sandbox:
    """One warm child process running module-level functions with a per-call time limit."""

    def __init__(self, timeout_s: float, warm: Callable[[], Any] | None = None,
                 poison: dict[str, str] | None = None) -> None:
        self.timeout_s = float(timeout_s)
        self.warm = warm
        self.poison = dict(poison or {})
        self._proc: subprocess.Popen | None = None
        self.restarts = 0

    # -- the child's life ----------------------------------------------------------------------
    def _start(self) -> None:
        import beardnet

        root = os.path.dirname(os.path.dirname(os.path.abspath(beardnet.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in
                                                      env.get("PYTHONPATH", "").split(os.pathsep)
                                                      if p])
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "beardnet.infer.sandbox"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        _write_frame(self._proc.stdin, {"warm": self.warm, "poison": self.poison})
        try:
            reply = _read_frame(self._proc.stdout.fileno(), time.monotonic() + STARTUP_TIMEOUT_S)
        except (EOFError, TimeoutError) as e:
            code = self._kill()
            raise RuntimeError(f"sandbox process did not start ({type(e).__name__}, "
                               f"exit {code})") from None
        if reply != "ready":
            self._kill()
            raise RuntimeError(f"sandbox process failed to start: {reply}")

    def _kill(self) -> int | None:
        p, self._proc = self._proc, None
        if p is None:
            return None
        if p.poll() is None:
            p.kill()
        try:
            code = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
        return code

    def close(self) -> None:
        """Stop the child (it also exits when this process dies: its stdin closes)."""
        self._kill()

    # -- calls ---------------------------------------------------------------------------------
    def _once(self, fn: Callable[..., Any], args: tuple, key: str) -> Any:
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                self._kill()
            self._start()
        p = self._proc
        assert p is not None
        try:
            _write_frame(p.stdin, (fn, args, key))
        except (BrokenPipeError, OSError):
            raise _ChildGone(f"worker process died (exit {self._kill()})") from None
        try:
            status, value = _read_frame(p.stdout.fileno(), time.monotonic() + self.timeout_s)
        except TimeoutError:
            self._kill()
            raise _ChildGone("timeout") from None
        except EOFError:
            code = self._kill()
            sig = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
            raise _ChildGone(f"worker process died ({sig})") from None
        if status == "ok":
            return value
        raise RemoteError(*value)

    def call(self, fn: Callable[..., Any], *args: Any, key: str = "") -> Any:
        """``fn(*args)`` in the child; a crash or timeout is retried once in a fresh child,
        then raised as :class:`PhotoFailed`. ``fn`` must be a module-level function."""
        last = ""
        for attempt in range(2):
            try:
                return self._once(fn, args, key)
            except _ChildGone as e:
                last = e.why
                if attempt == 0:
                    self.restarts += 1
        if last == "timeout":
            raise PhotoFailed("timeout", f"no result within {self.timeout_s:g} s, twice")
        raise PhotoFailed("worker_crash", f"{last}, twice")


def _child_main() -> None:
    """The child: read ``(fn, args, key)`` frames, answer ``("ok", result)`` or
    ``("err", (type, reason, message))``, until stdin closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from libraries go to stderr, not into the protocol
    sys.stdout = sys.stderr
    fd_in = sys.stdin.fileno()
    try:
        init = _read_frame(fd_in, None)
        if init.get("warm") is not None:
            init["warm"]()
        poison = init.get("poison") or {}
    except Exception as e:  # noqa: BLE001 - reported to the parent
        _write_frame(out, f"{type(e).__name__}: {e}")
        return
    _write_frame(out, "ready")
    while True:
        try:
            fn, args, key = _read_frame(fd_in, None)
        except EOFError:
            return
        if poison.get("crash") and poison["crash"] in key:
            os.kill(os.getpid(), signal.SIGSEGV)
        if poison.get("hang") and poison["hang"] in key:
            while True:
                time.sleep(3600)
        try:
            reply = ("ok", fn(*args))
        except Exception as e:  # noqa: BLE001 - every error goes back to the parent
            reply = ("err", (type(e).__name__, getattr(e, "reason", None),
                             getattr(e, "message", None) or str(e) or type(e).__name__))
        _write_frame(out, reply)


if __name__ == "__main__":
    _child_main()
