"""Crash-safe whole-file writes for config and offset files (per RocketMQ's MixAll.string2File).

``write_atomic`` writes ``<path>.tmp``, fsyncs it, keeps the previous file as ``<path>.bak`` and
renames the temp file over ``<path>``, then fsyncs the directory. A crash at any point leaves either
the old or the new content under ``<path>``, or (between the copy and the rename) at least the old
content under ``<path>.bak``; ``read_with_backup`` falls back to the ``.bak`` file when the main
file is missing or empty, as RocketMQ's ConfigManager does.

These functions block (fsync): call them from a thread pool, never from the reactor thread, except
at start-up before the reactor runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["write_atomic", "read_with_backup"]


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def _write_synced(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path``'s content with ``data`` durably; the previous content stays in ``.bak``.

    Creates missing parent directories. Raises ``OSError`` when the disk refuses the write; the
    old file is then untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    _write_synced(tmp, data)
    try:
        with open(path, "rb") as f:
            old = f.read()
    except FileNotFoundError:
        old = None
    if old:
        _write_synced(path + ".bak", old)
    os.replace(tmp, path)
    _fsync_dir(directory)


def read_with_backup(path: str, validate: Callable[[bytes], object] | None = None) -> bytes | None:
    """Return ``path``'s content, or its ``.bak`` when the file is missing or empty; else ``None``.

    With ``validate`` (e.g. a JSON parser), content for which it raises ``ValueError`` counts as
    unreadable too, so a torn or corrupt main file falls back to the backup.
    """
    for candidate in (path, path + ".bak"):
        try:
            with open(candidate, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        if not data:
            continue
        if validate is not None:
            try:
                validate(data)
            except ValueError:
                continue
        return data
    return None
