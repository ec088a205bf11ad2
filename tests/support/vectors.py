"""Loader for the shared captured-frame vectors (``/work/shared/vectors``, protocol §13).

The folder is found through the environment variable ``RMQ_VECTORS`` or, by default, as
``../shared/vectors`` relative to the repository root. Tests call ``require_vectors()`` (or the
other helpers, which call it) and are skipped with a clear reason when the folder is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from twisted.trial.unittest import SkipTest

if TYPE_CHECKING:
    from rmq.remoting.command import RemotingCommand

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VECTORS = REPO_ROOT.parent / "shared" / "vectors"


def vectors_dir() -> Path | None:
    """The vectors folder, or None when it does not exist."""
    configured = os.environ.get("RMQ_VECTORS")
    path = Path(configured) if configured else DEFAULT_VECTORS
    return path if path.is_dir() else None


def require_vectors() -> Path:
    """The vectors folder; raises SkipTest naming where it was looked for when it is missing."""
    path = vectors_dir()
    if path is None:
        where = os.environ.get("RMQ_VECTORS") or str(DEFAULT_VECTORS)
        raise SkipTest(f"shared test vectors not found at {where} (set RMQ_VECTORS)")
    return path


def load_hex(name: str) -> bytes:
    """The bytes of one ``*.hex`` vector, ``name`` relative to the folder (e.g. ``store/x.hex``)."""
    path = require_vectors() / name
    return bytes.fromhex(path.read_text("ascii").strip())


def frame_names() -> list[str]:
    """Names of the remoting-frame vectors: the top-level ``*.hex`` files, sorted.

    Returns an empty list when the folder is missing (callers generating tests use this at import
    time; a test body then calls ``require_vectors()`` to skip).
    """
    path = vectors_dir()
    if path is None:
        return []
    return sorted(p.name for p in path.glob("*.hex"))


def load_frame(name: str) -> bytes:
    """One remoting frame vector, complete with its 4-byte total-length word."""
    return load_hex(name)


def load_command(name: str) -> RemotingCommand:
    """One remoting frame vector decoded into a RemotingCommand."""
    from rmq.remoting.codec import decode

    return decode(load_frame(name)[4:])
