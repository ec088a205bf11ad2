"""Raw commit-log records for replication: parse what a master pushed (Java ``CommitLog.appendData``
plus the ``ReputMessageService`` dispatch of a slave).

A slave appends the master's bytes unchanged and then walks them record by record to build its
consume queues and index. Blocks may end inside a record (the master cuts at 32 KiB), so
:func:`next_record` tells "complete record", "end-of-file blank", "need more bytes" and "corrupt"
apart.
"""

from __future__ import annotations

import struct

import attrs

from rmq.common.message import (
    BLANK_MAGIC_CODE,
    MESSAGE_MAGIC_CODE,
    MessageSysFlag,
    string_to_properties,
    tags_hash,
)
from rmq.store.commitlog import CommitLog, check_record

_SIZE_MAGIC = struct.Struct(">ii")
_HEAD = struct.Struct(">iiiiiqqiq")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_I16 = struct.Struct(">h")

#: :func:`next_record` outcomes besides a record.
NEED_MORE = "need-more"
CORRUPT = "corrupt"


@attrs.define
class ReplicaRecord:
    """The fields of one stored record a slave needs to dispatch it (§7.1).

    ``blank`` is True for the end-of-file marker (``size`` bytes to skip, nothing to dispatch).
    """

    size: int
    blank: bool = False
    topic: str = ""
    queue_id: int = 0
    queue_offset: int = 0
    sys_flag: int = 0
    store_timestamp: int = 0
    properties: dict[str, str] = attrs.Factory(dict)

    @property
    def tags_code(self) -> int:
        """Hash of the TAGS property (Java ``tagsString2tagsCode``)."""
        return tags_hash(self.properties.get("TAGS"))


def next_record(data: bytes | bytearray | memoryview, pos: int) -> ReplicaRecord | str:
    """The record starting at ``pos`` of ``data`` (which ends where the received bytes end).

    Returns a :class:`ReplicaRecord`, :data:`NEED_MORE` when the bytes stop inside it, or
    :data:`CORRUPT` when it is no valid record.
    """
    mv = memoryview(data)
    if pos + 8 > len(mv):
        return NEED_MORE
    size, magic = _SIZE_MAGIC.unpack_from(mv, pos)
    if magic == BLANK_MAGIC_CODE:
        if size < 8:
            return CORRUPT
        if pos + size > len(mv):
            return NEED_MORE
        return ReplicaRecord(size=size, blank=True)
    if magic != MESSAGE_MAGIC_CODE or size < 91:
        return CORRUPT
    if pos + size > len(mv):
        return NEED_MORE
    if check_record(mv, pos, pos + size, False) != size:
        return CORRUPT
    (_, _, _, qid, _, qoff, _, sys_flag, _) = _HEAD.unpack_from(mv, pos)
    born = 20 if sys_flag & MessageSysFlag.BORNHOST_V6_FLAG else 8
    (store_ts,) = _I64.unpack_from(mv, pos + 48 + born)
    p = pos + 84
    if sys_flag & MessageSysFlag.BORNHOST_V6_FLAG:
        p += 12
    if sys_flag & MessageSysFlag.STOREHOSTADDRESS_V6_FLAG:
        p += 12
    (blen,) = _I32.unpack_from(mv, p)
    p += 4 + blen
    tlen = mv[p]
    topic = str(mv[p + 1 : p + 1 + tlen], "utf-8", "replace")
    p += 1 + tlen
    (plen,) = _I16.unpack_from(mv, p)
    props = string_to_properties(str(mv[p + 2 : p + 2 + plen], "utf-8", "replace"))
    return ReplicaRecord(
        size=size,
        topic=topic,
        queue_id=qid,
        queue_offset=qoff,
        sys_flag=sys_flag,
        store_timestamp=store_ts,
        properties=props,
    )


# --- commit-log files (FileMessageStore) --------------------------------------------------------


def read_raw(commitlog: CommitLog, offset: int, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` written bytes of ``commitlog`` from ``offset``, within one file."""
    if max_bytes <= 0 or offset < commitlog.min_offset or offset >= commitlog.max_offset:
        return b""
    mf = commitlog.files.find(offset)
    if mf is None:
        return b""
    p = offset - mf.start
    n = min(mf.wrote - p, max_bytes)
    return bytes(mf.mm[p : p + n]) if n > 0 else b""


def append_raw(commitlog: CommitLog, offset: int, data: bytes) -> None:
    """Write a master's bytes at ``offset`` = the commit log's end (Java ``appendData``).

    An empty commit log starts at ``offset`` when it is a file boundary; a full last file is
    followed by a new one. ValueError when the offset or the size does not fit.
    """
    files = commitlog.files
    size = commitlog.file_size
    if not files.files:
        if offset % size:
            raise ValueError(
                f"replica starts at {offset}, not a multiple of mappedFileSizeCommitLog {size}"
            )
        commitlog._last = files.create(offset)
    end = commitlog.max_offset
    if offset != end:
        raise ValueError(f"replica block at {offset}, commit log ends at {end}")
    mf = commitlog._last
    assert mf is not None
    if mf.wrote >= mf.size:
        mf = files.create(mf.end)
        commitlog._last = mf
    if mf.wrote + len(data) > mf.size:
        raise ValueError(
            f"replica block of {len(data)} bytes at {offset} crosses the end of a commit-log "
            f"file (master and slave mappedFileSizeCommitLog differ?)"
        )
    pos = mf.wrote
    mf.mm[pos : pos + len(data)] = data
    mf.wrote = pos + len(data)
    mf.dirty = True


def dispatchable(commitlog: CommitLog, start: int) -> tuple[list[tuple[int, ReplicaRecord]], int]:
    """Complete records from ``start`` to the commit log's end: ``([(phys, record)], next)``.

    Blank end-of-file markers are skipped (not returned); ``next`` is where the first incomplete
    record begins. ValueError for a corrupt record.
    """
    out: list[tuple[int, ReplicaRecord]] = []
    end = commitlog.max_offset
    pos = start
    while pos < end:
        mf = commitlog.files.find(pos)
        if mf is None:
            break
        with memoryview(mf.mm) as whole:
            view = whole[: mf.wrote]
            rec = next_record(view, pos - mf.start)
            view.release()
        if rec == NEED_MORE:
            break
        if isinstance(rec, str):
            raise ValueError(f"corrupt replicated record at commit-log offset {pos}")
        if not rec.blank:
            out.append((pos, rec))
        pos += rec.size
    return out, pos
