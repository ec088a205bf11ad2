"""Hash index files keyed by ``topic#key`` (Java ``IndexFile``, ``IndexHeader``, ``IndexService``).

File: 40-byte header ‖ ``slots`` int32 slot heads ‖ ``max_index`` 20-byte entries
(``keyHash`` int32, ``phyOffset`` int64, ``timeDiff`` int32 seconds, ``prevIndex`` int32).
Entry 0 is never used; ``indexCount`` is the next entry number.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable, Container

from twisted.logger import Logger

from rmq.common.message import java_string_hash
from rmq.store.mappedfile import PREFAULT_CHUNK, map_address

HEADER = struct.Struct(">qqqqii")
HEADER_SIZE = 40
ENTRY = struct.Struct(">iqii")
ENTRY_SIZE = 20
SLOT = struct.Struct(">i")


_HEADS: dict[str, int] = {}
_TAILS: dict[str, int] = {}


def _string_hash(key: str) -> int:
    """Java ``String.hashCode`` (signed) of an index key, memoised in two parts: the key less
    its last 4 characters (a UNIQ_KEY's head changes once per millisecond) and the last 4
    (ASCII only, so they are 4 UTF-16 units: hash = head·31⁴ + tail)."""
    tail = key[-4:]
    t = _TAILS.get(tail)
    if t is None:
        if not tail.isascii():
            return java_string_hash(key)
        if len(_TAILS) > 100_000:
            _TAILS.clear()
        t = _TAILS[tail] = java_string_hash(tail) & 0xFFFFFFFF
    head = key[:-4]
    h = _HEADS.get(head)
    if h is None:
        if len(_HEADS) > 4096:
            _HEADS.clear()
        h = _HEADS[head] = java_string_hash(head) & 0xFFFFFFFF
    h = (h * 923521 + t) & 0xFFFFFFFF
    return h - 0x100000000 if h & 0x80000000 else h


def key_hash(key: str) -> int:
    """``abs(String.hashCode(key))``, 0 when that overflows (Java ``indexKeyHashMethod``)."""
    h = abs(_string_hash(key))
    return 0 if h > 0x7FFFFFFF else h


def file_name_for(ms: int) -> str:
    """Index file name for a creation time: ``yyyyMMddHHmmssSSS`` in local time."""
    return time.strftime("%Y%m%d%H%M%S", time.localtime(ms / 1000)) + f"{ms % 1000:03d}"


class IndexFile:
    """One mapped index file."""

    __slots__ = (
        "path",
        "slots",
        "max_index",
        "fd",
        "mm",
        "begin_ts",
        "end_ts",
        "begin_phy",
        "end_phy",
        "slot_count",
        "index_count",
        "entries_pos",
        "dirty",
        "addr",
        "populated",
    )

    def __init__(self, path: str, slots: int, max_index: int, create: bool) -> None:
        self.path = path
        self.slots = slots
        self.max_index = max_index
        size = HEADER_SIZE + slots * 4 + max_index * ENTRY_SIZE
        self.fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        if os.fstat(self.fd).st_size < size:
            os.ftruncate(self.fd, size)
        self.mm = mmap.mmap(self.fd, size)
        (
            self.begin_ts,
            self.end_ts,
            self.begin_phy,
            self.end_phy,
            self.slot_count,
            self.index_count,
        ) = HEADER.unpack_from(self.mm, 0)
        if self.index_count <= 0:
            self.index_count = 1
        self.entries_pos = HEADER_SIZE + slots * 4
        self.dirty = create
        self.addr = map_address(self.mm) if create else 0
        self.populated = 0  # bytes from the start already handed to the pre-faulter

    @property
    def full(self) -> bool:
        """True when no entry is left."""
        return bool(self.index_count >= self.max_index)

    def put(self, h: int, phys: int, store_ts: int) -> bool:
        """Add one entry; False when the file is full."""
        n = self.index_count
        if n >= self.max_index:
            return False
        mm = self.mm
        slot_pos = HEADER_SIZE + (h % self.slots) * 4
        (prev,) = SLOT.unpack_from(mm, slot_pos)
        if prev <= 0 or prev > n:
            prev = 0
            self.slot_count += 1
        begin = self.begin_ts
        if begin <= 0:
            diff = 0
        else:
            diff = (store_ts - begin) // 1000
            if diff < 0:
                diff = 0
            elif diff > 0x7FFFFFFF:
                diff = 0x7FFFFFFF
        ENTRY.pack_into(mm, self.entries_pos + n * ENTRY_SIZE, h, phys, diff, prev)
        SLOT.pack_into(mm, slot_pos, n)
        if n <= 1:
            self.begin_phy = phys
            self.begin_ts = store_ts
        self.index_count = n + 1
        self.end_phy = phys
        self.end_ts = store_ts
        self.dirty = True
        return True

    def write_header(self) -> None:
        """Store the header fields into the mapping."""
        HEADER.pack_into(
            self.mm,
            0,
            self.begin_ts,
            self.end_ts,
            self.begin_phy,
            self.end_phy,
            self.slot_count,
            self.index_count,
        )

    def time_matched(self, begin: int, end: int) -> bool:
        """Java ``isTimeMatched``: the file's time span overlaps [begin, end]."""
        return bool(
            (begin < self.begin_ts and end > self.end_ts)
            or (self.begin_ts <= begin <= self.end_ts)
            or (self.begin_ts <= end <= self.end_ts)
        )

    def select(self, h: int, max_num: int, begin: int, end: int, out: list[int]) -> None:
        """Append commit-log offsets of entries with hash ``h`` stored in [begin, end]."""
        mm = self.mm
        count = self.index_count
        (nxt,) = SLOT.unpack_from(mm, HEADER_SIZE + (h % self.slots) * 4)
        if nxt <= 0 or nxt > count or count <= 1:
            return
        while len(out) < max_num:
            kh, phys, diff, prev = ENTRY.unpack_from(mm, self.entries_pos + nxt * ENTRY_SIZE)
            if diff < 0:
                break
            t = self.begin_ts + diff * 1000
            if kh == h and begin <= t <= end:
                out.append(phys)
            if prev <= 0 or prev > count or prev == nxt or t < begin:
                break
            nxt = prev

    def close(self, write_header: bool = True) -> None:
        """Write the header (unless told not to: crash simulations), unmap and close."""
        if write_header:
            self.write_header()
        self.mm.close()
        os.close(self.fd)

    def destroy(self) -> None:
        """Close and delete."""
        self.close()
        os.unlink(self.path)


class IndexService:
    """The index files of ``index/``, newest last."""

    log = Logger()

    def __init__(self, directory: str, slots: int, max_index: int) -> None:
        self.directory = directory
        self.slots = slots
        self.max_index = max_index
        self.files: list[IndexFile] = []
        # (address, length) -> None: pre-fault pages in a thread (set by the store)
        self.on_prefault: Callable[[int, int], None] | None = None

    def _prefault(self, f: IndexFile) -> None:
        """Hand the next region (slot table first, then entries ahead) to the pre-faulter."""
        if self.on_prefault is None or not f.addr:
            return
        size = len(f.mm)
        want = f.entries_pos + f.index_count * ENTRY_SIZE + PREFAULT_CHUNK
        while f.populated < min(want, size):
            length = min(PREFAULT_CHUNK * 8, size - f.populated)
            self.on_prefault(f.addr + f.populated, length)
            f.populated += length

    def load(self) -> None:
        """Map the existing index files in name (= time) order."""
        if not os.path.isdir(self.directory):
            return
        size = HEADER_SIZE + self.slots * 4 + self.max_index * ENTRY_SIZE
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if not name.isdigit() or os.path.getsize(path) != size:
                self.log.warn("Index file {path} skipped (name or size)", path=path)
                continue
            self.files.append(IndexFile(path, self.slots, self.max_index, False))

    @property
    def end_phy(self) -> int:
        """Commit-log offset of the newest indexed record (-1 if nothing indexed)."""
        for f in reversed(self.files):
            if f.index_count > 1:
                return int(f.end_phy)
        return -1

    def _writable(self, now_ms: int) -> IndexFile:
        if self.files and not self.files[-1].full:
            return self.files[-1]
        if self.files:
            self.files[-1].write_header()
        os.makedirs(self.directory, exist_ok=True)
        ms = now_ms
        while os.path.exists(os.path.join(self.directory, file_name_for(ms))):
            ms += 1
        f = IndexFile(
            os.path.join(self.directory, file_name_for(ms)), self.slots, self.max_index, True
        )
        self.files.append(f)
        self._prefault(f)
        return f

    def put_keys(self, keys: list[str], phys: int, store_ts: int, now_ms: int) -> None:
        """Index each key (already ``topic#key``) for the record at ``phys``."""
        f = self.files[-1] if self.files and not self.files[-1].full else self._writable(now_ms)
        for k in keys:
            h = _string_hash(k)
            h = 0 if h == -0x80000000 else abs(h)
            if not f.put(h, phys, store_ts):
                f = self._writable(now_ms)
                f.put(h, phys, store_ts)
        # The header goes to the mapping with every record: after a kill the count and end
        # offset match the entries and slots already written (a stale count would cut chains).
        f.write_header()
        if f.populated < f.entries_pos + f.index_count * ENTRY_SIZE + PREFAULT_CHUNK // 4:
            self._prefault(f)

    def put_batch(self, entries: list[tuple[str, int, int]]) -> None:
        """Index a batch of ``(topic#key, phys, store_ts)`` in commit-log order.

        One loop with the writable file's state in locals. Per entry: the entry, then its slot,
        then the header, so a kill at any point leaves a header whose count and end offset
        cover every slot already pointing at an entry (recovery re-indexes what follows)."""
        if not entries:
            return
        f = self.files[-1] if self.files and not self.files[-1].full else None
        if f is None:
            f = self._writable(entries[0][2])
        mm = f.mm
        slots = f.slots
        epos = f.entries_pos
        n = f.index_count
        limit = f.max_index
        begin_ts = f.begin_ts
        begin_phy = f.begin_phy
        end_phy = f.end_phy
        end_ts = f.end_ts
        slot_count = f.slot_count
        pack_entry = ENTRY.pack_into
        pack_slot = SLOT.pack_into
        unpack_slot = SLOT.unpack_from
        pack_header = HEADER.pack_into
        jhash = _string_hash
        for k, phys, ts in entries:
            if n >= limit:
                f.index_count, f.slot_count = n, slot_count
                f.begin_ts, f.begin_phy, f.end_phy, f.end_ts = begin_ts, begin_phy, end_phy, end_ts
                f.dirty = True
                f = self._writable(ts)
                mm, slots, epos, n, limit = f.mm, f.slots, f.entries_pos, f.index_count, f.max_index
                begin_ts, begin_phy, slot_count = f.begin_ts, f.begin_phy, f.slot_count
            h = jhash(k)
            h = 0 if h == -0x80000000 else abs(h)
            slot_pos = HEADER_SIZE + (h % slots) * 4
            (prev,) = unpack_slot(mm, slot_pos)
            if prev <= 0 or prev > n:
                prev = 0
                slot_count += 1
            if n <= 1:
                begin_phy = phys
                begin_ts = ts
            diff = (ts - begin_ts) // 1000 if begin_ts > 0 else 0
            if diff < 0:
                diff = 0
            elif diff > 0x7FFFFFFF:
                diff = 0x7FFFFFFF
            pack_entry(mm, epos + n * ENTRY_SIZE, h, phys, diff, prev)
            pack_slot(mm, slot_pos, n)
            n += 1
            end_phy = phys
            end_ts = ts
            pack_header(mm, 0, begin_ts, ts, begin_phy, phys, slot_count, n)
        f.index_count, f.slot_count = n, slot_count
        f.begin_ts, f.begin_phy, f.end_phy, f.end_ts = begin_ts, begin_phy, end_phy, end_ts
        f.dirty = True
        if f.populated < f.entries_pos + n * ENTRY_SIZE + PREFAULT_CHUNK // 4:
            self._prefault(f)

    def query(self, key: str, max_num: int, begin: int, end: int) -> list[int]:
        """Commit-log offsets of records indexed under ``key`` in [begin, end], newest first."""
        h = key_hash(key)
        out: list[int] = []
        for f in reversed(self.files):
            if len(out) >= max_num:
                break
            if f.index_count <= 1:
                continue
            if f.time_matched(begin, end):
                f.select(h, max_num, begin, end, out)
            if f.begin_ts < begin:
                break
        return out

    def write_headers(self) -> None:
        """Store the header fields of dirty files."""
        for f in self.files:
            if f.dirty:
                f.write_header()

    def dirty_fds(self) -> list[int]:
        """Descriptors of files changed since the last call (headers written first)."""
        out = []
        for f in self.files:
            if f.dirty:
                f.write_header()
                f.dirty = False
                out.append(f.fd)
        return out

    def delete_below(self, phy_min: int, busy: Container[int] = ()) -> int:
        """Delete files (never the newest, nor one being synced) wholly below ``phy_min``."""
        n = 0
        while (
            len(self.files) > 1 and self.files[0].end_phy < phy_min and self.files[0].fd not in busy
        ):
            self.files.pop(0).destroy()
            n += 1
        return n

    def close(self, write_headers: bool = True) -> None:
        """Close every file (``write_headers=False`` leaves the mapped state as a kill would)."""
        for f in self.files:
            f.close(write_headers)
        self.files = []
