"""Consume queues: 20-byte units ``commitLogOffset ‖ size ‖ tagsCode`` per topic and queue id.

Java ``ConsumeQueue``. Unit *k* lives at global byte 20·k of ``consumequeue/TOPIC/QID/``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Container

from twisted.logger import Logger

from rmq.store.mappedfile import MappedFile, MappedFileQueue

UNIT = struct.Struct(">qiq")
UNIT_SIZE = 20
FILLER_SIZE = 0x7FFFFFFF


class ConsumeQueue:
    """One queue's units; ``max_offset`` = number of units, ``min_offset`` the first live one."""

    log = Logger()

    def __init__(self, root: str, topic: str, queue_id: int, file_size: int) -> None:
        self.topic = topic
        self.queue_id = queue_id
        self.files = MappedFileQueue(os.path.join(root, topic, str(queue_id)), file_size)
        self.file_size = file_size
        self.max_offset = 0
        self.min_offset = 0
        self.max_phy = 0  # commit-log end of the last unit (phys + size)

    def recover(self) -> None:
        """Load the files and find the last valid unit (offset >= 0 and size > 0)."""
        self.files.load()
        fs = self.files.files
        if not fs:
            return
        end = fs[0].start
        for mf in fs:
            # Units are written in order: binary-search the first empty unit, then step back
            # over torn ones (a valid unit has offset >= 0 and size > 0).
            lo, hi = 0, mf.size // UNIT_SIZE
            while lo < hi:
                mid = (lo + hi) // 2
                if UNIT.unpack_from(mf.mm, mid * UNIT_SIZE)[1] != 0:
                    lo = mid + 1
                else:
                    hi = mid
            pos = lo * UNIT_SIZE
            while pos > 0:
                off, size, _ = UNIT.unpack_from(mf.mm, pos - UNIT_SIZE)
                if off >= 0 and size > 0:
                    break
                pos -= UNIT_SIZE
            if pos == 0 and mf is not fs[0]:
                break
            end = mf.start + pos
            if pos < mf.size:
                break
        self.files.truncate(end)
        self.max_offset = end // UNIT_SIZE
        self.min_offset = fs[0].start // UNIT_SIZE if self.files.files else self.max_offset
        self._update_max_phy()

    def _update_max_phy(self) -> None:
        self.max_phy = 0
        if self.max_offset > self.min_offset:
            unit = self.read_unit(self.max_offset - 1)
            if unit is not None and unit[1] != FILLER_SIZE:
                self.max_phy = unit[0] + unit[1]

    def put(self, queue_offset: int, phys: int, size: int, tags_code: int) -> bool:
        """Write unit ``queue_offset``; duplicates are ignored, gaps padded with filler units."""
        if queue_offset == self.max_offset and self.files.files:
            mf = self.files.files[-1]
            pos = queue_offset * UNIT_SIZE - mf.start
            if 0 <= pos < mf.size:  # the common case: append inside the last file
                UNIT.pack_into(mf.mm, pos, phys, size, tags_code)
                mf.wrote = pos + UNIT_SIZE
                mf.dirty = True
                self.max_offset = queue_offset + 1
                self.max_phy = phys + size
                return True
        if queue_offset < self.max_offset:
            return False
        if queue_offset > self.max_offset:
            if self.max_offset != 0 or self.files.files:
                self.log.error(
                    "Consume queue {topic}/{qid} gap: expected {want}, got {got}",
                    topic=self.topic,
                    qid=self.queue_id,
                    want=self.max_offset,
                    got=queue_offset,
                )
            while self.max_offset < queue_offset:
                self._write(self.max_offset, 0, FILLER_SIZE, 0)
        self._write(queue_offset, phys, size, tags_code)
        self.max_phy = phys + size
        return True

    def _write(self, queue_offset: int, phys: int, size: int, tags_code: int) -> None:
        pos = queue_offset * UNIT_SIZE
        mf = self.files.files[-1] if self.files.files else None
        if mf is None or pos >= mf.end:
            mf = self._new_file(pos)
        UNIT.pack_into(mf.mm, pos - mf.start, phys, size, tags_code)
        mf.wrote = pos - mf.start + UNIT_SIZE
        mf.dirty = True
        self.max_offset = queue_offset + 1

    def _new_file(self, pos: int) -> MappedFile:
        start = pos - pos % self.file_size
        first = not self.files.files
        mf = self.files.create(start)
        if first:
            self.min_offset = start // UNIT_SIZE
            # A queue that starts inside a file gets filler units before its first unit.
            for p in range(0, pos - start, UNIT_SIZE):
                UNIT.pack_into(mf.mm, p, 0, FILLER_SIZE, 0)
            self.max_offset = pos // UNIT_SIZE
        return mf

    def read_unit(self, queue_offset: int) -> tuple[int, int, int] | None:
        """``(phys, size, tags_code)`` of one unit, None outside the queue."""
        if not self.min_offset <= queue_offset < self.max_offset:
            return None
        pos = queue_offset * UNIT_SIZE
        mf = self.files.find(pos)
        if mf is None:
            return None
        return UNIT.unpack_from(mf.mm, pos - mf.start)  # type: ignore[return-value]

    def read_units(self, queue_offset: int, count: int) -> bytes:
        """Up to ``count`` raw units from ``queue_offset``, stopping at the end of its file."""
        count = min(count, self.max_offset - queue_offset)
        if count <= 0 or queue_offset < self.min_offset:
            return b""
        pos = queue_offset * UNIT_SIZE
        mf = self.files.find(pos)
        if mf is None:
            return b""
        p = pos - mf.start
        return mf.mm[p : min(mf.size, p + count * UNIT_SIZE)]

    def truncate_phys(self, phy_end: int) -> None:
        """Drop units referring to commit-log data at or past ``phy_end``."""
        lo, hi = self.min_offset, self.max_offset
        # units are in commit-log order: find the first with phys >= phy_end (fillers count as 0)
        while lo < hi:
            mid = (lo + hi) // 2
            unit = self.read_unit(mid)
            if unit is not None and unit[1] != FILLER_SIZE and unit[0] + unit[1] > phy_end:
                hi = mid
            else:
                lo = mid + 1
        if lo < self.max_offset:
            self.files.truncate(lo * UNIT_SIZE)
            self.max_offset = lo
            if not self.files.files:
                self.min_offset = lo
            self._update_max_phy()

    def correct_min_offset(self, phy_min: int) -> None:
        """Move ``min_offset`` to the first unit whose record is still in the commit log."""
        lo, hi = self.min_offset, self.max_offset
        while lo < hi:
            mid = (lo + hi) // 2
            unit = self.read_unit(mid)
            if unit is not None and unit[1] != FILLER_SIZE and unit[0] >= phy_min:
                hi = mid
            else:
                lo = mid + 1
        self.min_offset = lo

    def delete_files_below(self, phy_min: int, busy: Container[int] = ()) -> int:
        """Delete whole files whose last unit points below ``phy_min`` (stopping at one whose
        descriptor is in ``busy``); returns files deleted."""
        deleted = 0
        fs = self.files.files
        while len(fs) > 1:
            mf = fs[0]
            if mf.fd in busy:
                break
            last = UNIT.unpack_from(mf.mm, mf.size - UNIT_SIZE)
            if last[1] == FILLER_SIZE or last[0] + last[1] > phy_min:
                break
            fs.pop(0)
            mf.destroy()
            deleted += 1
        self.correct_min_offset(phy_min)
        return deleted

    def close(self) -> None:
        """Close the files."""
        self.files.close()
