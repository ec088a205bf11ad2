"""The commit log: stored records (§7.1) back to back in ``commitlog/`` files (Java ``CommitLog``).

Appends run on the reactor thread into mapped files; a record that does not fit (with 8 spare
bytes) is preceded by the 8-byte blank marker that fills the rest of its file. ``scan`` walks and
checks records for recovery.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from rmq.common.message import (
    BLANK_MAGIC_CODE,
    MESSAGE_MAGIC_CODE,
    MessageSysFlag,
)
from rmq.store.mappedfile import MappedFile, MappedFileQueue

_SIZE_MAGIC = struct.Struct(">ii")
_HEAD = struct.Struct(">iiiiiqqiq")
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
END_BLANK = 8
PHYS_POS = 28

# Record visitor used by recovery: (mv, pos in file, phys, size, head tuple, store_ts)
RecordVisitor = Callable[[memoryview, int, int, int], None]


class CommitLog:
    """Append-only record files with random reads by commit-log offset."""

    def __init__(self, directory: str, file_size: int) -> None:
        self.files = MappedFileQueue(directory, file_size, preallocate=True)
        self.file_size = file_size
        self._last: MappedFile | None = None
        self.on_prefault: Callable[[MappedFile], None] | None = None

    def load(self) -> None:
        """Map existing files (write position set later by recovery)."""
        self.files.load()
        self._last = self.files.files[-1] if self.files.files else None

    @property
    def min_offset(self) -> int:
        """First stored byte (start of the oldest file)."""
        return self.files.min_offset

    @property
    def max_offset(self) -> int:
        """Offset after the last record."""
        last = self._last
        return last.start + last.wrote if last is not None else self.files.min_offset

    def append(self, raw: bytes) -> int:
        """Write one encoded record, patch its PHYSICALOFFSET, return that offset."""
        n = len(raw)
        mf = self._last
        if mf is None or mf.wrote + n + END_BLANK > mf.size:
            if mf is not None:
                _SIZE_MAGIC.pack_into(mf.mm, mf.wrote, mf.size - mf.wrote, BLANK_MAGIC_CODE)
                mf.wrote = mf.size
                mf.dirty = True
                start = mf.end
            else:
                start = 0
            mf = self.files.create(start)
            self._last = mf
        pos = mf.wrote
        mm = mf.mm
        mm[pos : pos + n] = raw
        phys = mf.start + pos
        _I64.pack_into(mm, pos + PHYS_POS, phys)
        mf.wrote = pos + n
        mf.dirty = True
        if mf.wrote + 1048576 >= mf.populated and self.on_prefault is not None:
            self.on_prefault(mf)
        return phys

    def read(self, phys: int, size: int) -> bytes | None:
        """``size`` bytes at ``phys`` if they lie in one written file."""
        mf = self.files.find(phys)
        if mf is None:
            return None
        p = phys - mf.start
        if p + size > mf.wrote or size <= 0:
            return None
        return mf.mm[p : p + size]

    def record_at(self, phys: int) -> bytes | None:
        """The whole record starting at ``phys`` (checked magic and bounds), else None."""
        mf = self.files.find(phys)
        if mf is None:
            return None
        p = phys - mf.start
        if p + 8 > mf.wrote:
            return None
        size, magic = _SIZE_MAGIC.unpack_from(mf.mm, p)
        if magic != MESSAGE_MAGIC_CODE or size < 91 or p + size > mf.wrote:
            return None
        return mf.mm[p : p + size]

    def store_ts_at(self, phys: int) -> int:
        """STORETIMESTAMP of the record at ``phys`` (-1 if there is none)."""
        mf = self.files.find(phys)
        if mf is None:
            return -1
        p = phys - mf.start
        if p + 80 > mf.wrote:
            return -1
        (sys_flag,) = _I32.unpack_from(mf.mm, p + 36)
        born = 20 if sys_flag & MessageSysFlag.BORNHOST_V6_FLAG else 8
        (ts,) = _I64.unpack_from(mf.mm, p + 48 + born)
        return int(ts)

    def truncate(self, offset: int) -> None:
        """Drop everything from ``offset`` (files after it deleted, its file's tail zeroed)."""
        self.files.truncate(offset)
        self._last = self.files.files[-1] if self.files.files else None

    def close(self) -> None:
        """Close every file."""
        self.files.close()
        self._last = None


def check_record(mv: memoryview, pos: int, limit: int, check_crc: bool) -> int:
    """Validate the record at ``pos`` of a file view: its size if valid, 0 for the blank
    end-of-file marker, -1 when invalid or torn (Java ``checkMessageAndReturnSize``)."""
    if pos + 8 > limit:
        return -1
    size, magic = _SIZE_MAGIC.unpack_from(mv, pos)
    if magic == BLANK_MAGIC_CODE:
        return 0 if size == limit - pos else -1
    if magic != MESSAGE_MAGIC_CODE or size < 91 or pos + size > limit:
        return -1
    (sys_flag,) = _I32.unpack_from(mv, pos + 36)
    p = pos + 84
    if sys_flag & MessageSysFlag.BORNHOST_V6_FLAG:
        p += 12
    if sys_flag & MessageSysFlag.STOREHOSTADDRESS_V6_FLAG:
        p += 12
    (blen,) = _I32.unpack_from(mv, p)
    if blen < 0 or p + 4 + blen + 3 > pos + size:
        return -1
    body_at = p + 4
    p = body_at + blen
    tlen = mv[p]
    if tlen > 127 or p + 1 + tlen + 2 > pos + size:
        return -1
    p += 1 + tlen
    (plen,) = _I16.unpack_from(mv, p)
    if plen < 0 or p + 2 + plen != pos + size:
        return -1
    # A record torn by a crash mid-copy ends in zeros: the last property (or topic) byte of a
    # whole record is never 0, while the body CRC covers only the body.
    if (plen and mv[pos + size - 1] == 0) or (not plen and tlen and mv[p - 1] == 0):
        return -1
    if check_crc:
        (crc,) = _I32.unpack_from(mv, pos + 8)
        if zlib.crc32(mv[body_at : body_at + blen]) & 0x7FFFFFFF != crc:
            return -1
    return int(size)
