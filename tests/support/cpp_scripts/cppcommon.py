"""Helpers shared by the C++ client scripts and by the tests that check their output.

Standard library only: the scripts import it as a sibling module, the tests as
``tests.support.cpp_scripts.cppcommon``; both sides must build the very same bodies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import sys
import threading
from typing import Any

_emit_lock = threading.Lock()

#: Bodies up to this size are echoed back in full (base64) in "received" events.
ECHO_BODY_LIMIT = 4096

# The C++ client's Python binding reads a received body with ctypes ``c_char_p`` (NUL-terminated),
# so generated bodies never contain a zero byte; every other byte value is used.
_NO_NUL = bytes.maketrans(b"\x00", b"\x01")


def pattern_body(seed: int, size: int) -> bytes:
    """Deterministic pseudo-random bytes without NUL (incompressible, so zlib paths are real)."""
    return random.Random(seed).randbytes(size).translate(_NO_NUL)


def body_from_spec(spec: Any) -> bytes:
    """Build a body from its JSON description.

    ``{"text": str}`` is UTF-8 encoded, ``{"b64": str}`` decoded, ``{"pattern": [seed, size]}``
    expanded with :func:`pattern_body`; a bare string is ``{"text": ...}``.
    """
    if isinstance(spec, str):
        return spec.encode("utf-8")
    if "text" in spec:
        return str(spec["text"]).encode("utf-8")
    if "b64" in spec:
        return base64.b64decode(spec["b64"])
    seed, size = spec["pattern"]
    return pattern_body(int(seed), int(size))


def digest(body: bytes) -> str:
    """Hex SHA-256 of a body, the integrity check carried in events."""
    return hashlib.sha256(body).hexdigest()


def body_fields(body: bytes) -> dict[str, Any]:
    """Event fields describing a body: length, digest and, for small bodies, the bytes (base64)."""
    fields: dict[str, Any] = {"body_len": len(body), "body_sha256": digest(body)}
    if len(body) <= ECHO_BODY_LIMIT:
        fields["body_b64"] = base64.b64encode(body).decode("ascii")
    return fields


def emit(event: str, **fields: Any) -> None:
    """Write one event as a JSON line on stdout (thread-safe: C++ callbacks run on many threads)."""
    line = json.dumps({"event": event, **fields}, ensure_ascii=True, sort_keys=True)
    with _emit_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def load_params() -> dict[str, Any]:
    """Read the parameter file named by argv[1]."""
    with open(sys.argv[1], encoding="utf-8") as f:
        params: dict[str, Any] = json.load(f)
    return params


def text(value: Any) -> str | None:
    """Decode a ``bytes`` value returned by the C++ binding (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return str(value)


def configure_logging(dll: Any, handle: Any, kind: str, params: dict[str, Any]) -> None:
    """Lower the C++ client's log level when asked (``log_level``: 1 fatal … 6 trace)."""
    level = params.get("log_level")
    if level is None:
        return
    setter = getattr(dll, f"Set{kind}LogLevel")
    setter(handle, int(level))


def wait_for_stop() -> None:
    """Block the main thread until stdin says ``{"cmd": "stop"}`` or is closed."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
        except ValueError:
            continue
        if command.get("cmd") == "stop":
            return
