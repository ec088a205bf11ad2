"""Tests for rmq.common.atomicfile: durable replace with a .bak copy, and reading with fallback."""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from rmq.common.atomicfile import read_with_backup, write_atomic


class AtomicFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        self.path = os.path.join(self.dir, "sub", "kvConfig.json")

    def test_first_write_creates_directories(self) -> None:
        """The first write creates missing parent directories and leaves no temp or backup file."""
        write_atomic(self.path, b"one")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"one")
        self.assertEqual(sorted(os.listdir(os.path.dirname(self.path))), ["kvConfig.json"])

    def test_second_write_keeps_backup(self) -> None:
        """A replacing write keeps the previous content in <path>.bak."""
        write_atomic(self.path, b"one")
        write_atomic(self.path, b"two")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"two")
        with open(self.path + ".bak", "rb") as f:
            self.assertEqual(f.read(), b"one")
        self.assertFalse(os.path.exists(self.path + ".tmp"))

    def test_read_missing(self) -> None:
        """Reading a path with neither file nor backup returns None."""
        self.assertIsNone(read_with_backup(self.path))

    def test_read_falls_back_to_backup(self) -> None:
        """An empty or missing main file falls back to the backup."""
        write_atomic(self.path, b"one")
        write_atomic(self.path, b"two")
        with open(self.path, "wb"):
            pass
        self.assertEqual(read_with_backup(self.path), b"one")
        os.remove(self.path)
        self.assertEqual(read_with_backup(self.path), b"one")

    def test_read_validates(self) -> None:
        """Content the validator refuses counts as unreadable and the backup is used."""
        write_atomic(self.path, b'{"a":1}')
        write_atomic(self.path, b'{"a":2}')
        with open(self.path, "wb") as f:
            f.write(b'{"a":')
        self.assertEqual(read_with_backup(self.path, json.loads), b'{"a":1}')
        self.assertEqual(read_with_backup(self.path), b'{"a":')

    def test_write_failure_keeps_old_file(self) -> None:
        """When the temp file cannot be written, OSError is raised and the old file is untouched."""
        write_atomic(self.path, b"one")
        os.mkdir(self.path + ".tmp")  # opening the temp path for writing now fails
        self.assertRaises(OSError, write_atomic, self.path, b"two")
        self.assertEqual(read_with_backup(self.path), b"one")
