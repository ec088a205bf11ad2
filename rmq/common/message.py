"""RocketMQ message model and binary codecs: stored records, batch bodies, properties, message ids.

Java counterparts: ``Message``, ``MessageExt``, ``MessageExtBrokerInner``, ``MessageConst``,
``MessageSysFlag``, ``MessageDecoder`` and ``MessageClientIDSetter``. Layouts are in
``rocketmq-protocol.md`` §7 and §8. Everything here is pure (no I/O, no reactor).
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator

import attrs

# --- property names (MessageConst) -------------------------------------------------------------

KEYS = "KEYS"
TAGS = "TAGS"
WAIT = "WAIT"
DELAY = "DELAY"
RETRY_TOPIC = "RETRY_TOPIC"
REAL_TOPIC = "REAL_TOPIC"
REAL_QID = "REAL_QID"
TRAN_MSG = "TRAN_MSG"
PGROUP = "PGROUP"
MIN_OFFSET = "MIN_OFFSET"
MAX_OFFSET = "MAX_OFFSET"
BUYER_ID = "BUYER_ID"
ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
TRANSFER_FLAG = "TRANSFER_FLAG"
CORRECTION_FLAG = "CORRECTION_FLAG"
MQ2_FLAG = "MQ2_FLAG"
RECONSUME_TIME = "RECONSUME_TIME"
MSG_REGION = "MSG_REGION"
TRACE_ON = "TRACE_ON"
UNIQ_KEY = "UNIQ_KEY"
MAX_RECONSUME_TIMES = "MAX_RECONSUME_TIMES"
CONSUME_START_TIME = "CONSUME_START_TIME"
TRAN_PREPARED_QUEUE_OFFSET = "TRAN_PREPARED_QUEUE_OFFSET"
TRANSACTION_CHECK_TIMES = "TRANSACTION_CHECK_TIMES"
CHECK_IMMUNITY_TIME_IN_SECONDS = "CHECK_IMMUNITY_TIME_IN_SECONDS"
INSTANCE_ID = "INSTANCE_ID"
CORRELATION_ID = "CORRELATION_ID"
REPLY_TO_CLIENT = "REPLY_TO_CLIENT"
TTL = "TTL"
ARRIVE_TIME = "ARRIVE_TIME"
PUSH_REPLY_TIME = "PUSH_REPLY_TIME"
MSG_TYPE = "MSG_TYPE"
CLUSTER = "CLUSTER"
INNER_MULTI_DISPATCH = "INNER_MULTI_DISPATCH"
INNER_MULTI_QUEUE_OFFSET = "INNER_MULTI_QUEUE_OFFSET"
UNIQUE_KEY_QUERY = "_UNIQUE_KEY_QUERY"

KEY_SEPARATOR = " "
NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"

MESSAGE_MAGIC_CODE = -626843481  # 0xDAA320A7 as a signed int32
BLANK_MAGIC_CODE = -875286124  # 0xCBD43194 as a signed int32


class MessageSysFlag:
    """Bits of the record/send-header ``sysFlag`` word (Java ``MessageSysFlag``, §7.3.1)."""

    COMPRESSED_FLAG = 0x1
    MULTI_TAGS_FLAG = 0x2
    TRANSACTION_NOT_TYPE = 0x0
    TRANSACTION_PREPARED_TYPE = 0x4
    TRANSACTION_COMMIT_TYPE = 0x8
    TRANSACTION_ROLLBACK_TYPE = 0xC
    TRANSACTION_TYPE_MASK = 0xC
    BORNHOST_V6_FLAG = 0x10
    STOREHOSTADDRESS_V6_FLAG = 0x20
    NEED_UNWRAP_FLAG = 0x40
    INNER_BATCH_FLAG = 0x80
    COMPRESSION_TYPE_MASK = 0x700
    COMPRESSION_LZ4_TYPE = 0x100
    COMPRESSION_ZSTD_TYPE = 0x200
    COMPRESSION_ZLIB_TYPE = 0x300

    @staticmethod
    def transaction_type(sys_flag: int) -> int:
        """The transaction-type bits (NOT, PREPARED, COMMIT or ROLLBACK) of a sysFlag."""
        return sys_flag & MessageSysFlag.TRANSACTION_TYPE_MASK

    @staticmethod
    def reset_transaction_type(sys_flag: int, kind: int) -> int:
        """``sys_flag`` with its transaction-type bits replaced by ``kind``."""
        return (sys_flag & ~MessageSysFlag.TRANSACTION_TYPE_MASK) | kind


# --- properties (MessageDecoder.messageProperties2String / string2messageProperties) ---------


def properties_to_string(properties: dict[str, str]) -> str:
    """Encode properties Java's way: ``name\\x01value`` pairs joined by ``\\x02``."""
    return PROPERTY_SEPARATOR.join(
        f"{k}{NAME_VALUE_SEPARATOR}{v}" for k, v in properties.items() if k and v is not None
    )


def string_to_properties(text: str) -> dict[str, str]:
    """Decode a property string; trailing separators ok, empty names/values dropped, last wins."""
    props: dict[str, str] = {}
    if not text:
        return props
    for seg in text.split(PROPERTY_SEPARATOR):
        i = seg.find(NAME_VALUE_SEPARATOR)
        if 0 < i < len(seg) - 1:
            props[seg[:i]] = seg[i + 1 :]
    return props


@functools.lru_cache(maxsize=8192)
def _java_hash_cached(s: str) -> int:
    """Unsigned Java ``String.hashCode`` (cached: tags, topics and key prefixes repeat)."""
    h = 0
    for (c,) in struct.iter_unpack(">H", s.encode("utf-16-be")):
        h = (31 * h + c) & 0xFFFFFFFF
    return h


_CHUNK_POLY: dict[str, int] = {}
_POW31_4 = 31**4


def _chunk_poly(chunk: str) -> int:
    """Σ c·31^k over a 4-character ASCII chunk (memoised; hex keys have at most 65,536)."""
    v = 0
    for c in chunk.encode():
        v = v * 31 + c
    if len(_CHUNK_POLY) > 200_000:
        _CHUNK_POLY.clear()
    _CHUNK_POLY[chunk] = v
    return v


def java_string_hash(s: str) -> int:
    """Java ``String.hashCode()`` (UTF-16 code units, signed 32-bit arithmetic).

    Long strings hash as their cached head extended by the last 8 characters (two memoised
    4-character chunks), so unique keys sharing a producer prefix cost a few dict lookups.
    """
    if len(s) <= 16:
        h = _java_hash_cached(s)
    else:
        tail = s[-8:]
        if tail.isascii():
            a, b = tail[:4], tail[4:]
            pa = _CHUNK_POLY.get(a)
            if pa is None:
                pa = _chunk_poly(a)
            pb = _CHUNK_POLY.get(b)
            if pb is None:
                pb = _chunk_poly(b)
            h = ((_java_hash_cached(s[:-8]) * _POW31_4 + pa) * _POW31_4 + pb) & 0xFFFFFFFF
        else:
            h = _java_hash_cached.__wrapped__(s)
    return h - 0x100000000 if h & 0x80000000 else h


def tags_hash(tags: str | None) -> int:
    """Consume-queue tags code: Java ``String.hashCode`` of the tag, 0 when there is none (§9.2)."""
    if not tags:
        return 0
    return java_string_hash(tags)


# --- hosts ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def split_host(address: str) -> tuple[str, int]:
    """Split ``"ip:port"`` (or ``"[v6]:port"``) into ip and port; IPv4-mapped IPv6 becomes IPv4."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(port) if port else 0


@functools.lru_cache(maxsize=4096)
def encode_host(address: str) -> bytes:
    """Socket address bytes as stored in a record: 4 (or 16) address bytes + int32 port."""
    host, port = split_host(address)
    try:
        raw = socket.inet_pton(socket.AF_INET, host)
    except OSError:
        raw = socket.inet_pton(socket.AF_INET6, host)
    return raw + struct.pack(">i", port)


def decode_host(raw: bytes | memoryview) -> str:
    """Inverse of :func:`encode_host`: ``"ip:port"`` (IPv6 without brackets)."""
    if len(raw) == 8:
        ip = socket.inet_ntop(socket.AF_INET, bytes(raw[:4]))
    else:
        ip = socket.inet_ntop(socket.AF_INET6, bytes(raw[:16]))
    (port,) = struct.unpack_from(">i", raw, len(raw) - 4)
    return f"{ip}:{port}"


# --- message ids (§8) -------------------------------------------------------------------------


def create_offset_msg_id(host: str, port: int, commit_offset: int) -> str:
    """Offset message id: uppercase hex of store IP ‖ int32 port ‖ int64 commit-log offset."""
    return (encode_host(f"{host}:{port}") + struct.pack(">q", commit_offset)).hex().upper()


@attrs.frozen
class OffsetMsgId:
    """A decoded offset message id (Java ``MessageId``)."""

    host: str
    port: int
    offset: int

    @property
    def address(self) -> str:
        """The store host as ``"ip:port"``."""
        return f"{self.host}:{self.port}"


def decode_offset_msg_id(msg_id: str) -> OffsetMsgId:
    """Decode an offset message id (32 hex chars for IPv4, 56 for IPv6); ValueError if malformed."""
    raw = bytes.fromhex(msg_id)
    if len(raw) == 16:
        ip = socket.inet_ntop(socket.AF_INET, raw[:4])
    elif len(raw) == 28:
        ip = socket.inet_ntop(socket.AF_INET6, raw[:16])
    else:
        raise ValueError(f"bad offset message id length {len(msg_id)}")
    port, offset = struct.unpack_from(">iq", raw, len(raw) - 12)
    return OffsetMsgId(ip, port, offset)


class UniqueIdGenerator:
    """Producer-side ``UNIQ_KEY`` ids in Java's layout (``MessageClientIDSetter``, §8.2).

    ip (4 or 16 bytes) ‖ pid low 16 bits ‖ int32 class-loader hash ‖ int32 ms since the start of
    the current month (local time) ‖ int16 counter (0 first, as Java's), as uppercase hex.
    Thread-safe without a lock: the counter is an ``itertools.count`` (``next`` is atomic), and
    the cached ``ip…ms`` head is only ever replaced by a complete string.
    """

    def __init__(
        self,
        ip: str = "127.0.0.1",
        pid: int | None = None,
        loader_hash: int | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        try:
            ip_raw = socket.inet_pton(socket.AF_INET, ip)
        except OSError:
            ip_raw = socket.inet_pton(socket.AF_INET6, ip)
        pid = os.getpid() if pid is None else pid
        if loader_hash is None:
            loader_hash = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
        self._prefix = (ip_raw + struct.pack(">HI", pid & 0xFFFF, loader_hash & 0xFFFFFFFF)).hex()
        self._prefix = self._prefix.upper()
        self._now = now
        self._counter = itertools.count()
        self._month_start = 0.0
        self._next_month = 0.0
        # Many ids share one millisecond: their first 28 (IPv4) hex chars are built once.
        self._head_ms = -1
        self._head = ""

    def _set_month(self, t: float) -> None:
        lt = time.localtime(t)
        self._month_start = time.mktime((lt.tm_year, lt.tm_mon, 1, 0, 0, 0, 0, 0, -1))
        year, month = (lt.tm_year + 1, 1) if lt.tm_mon == 12 else (lt.tm_year, lt.tm_mon + 1)
        self._next_month = time.mktime((year, month, 1, 0, 0, 0, 0, 0, -1))

    def next_id(self) -> str:
        """A new unique id (32 hex chars for an IPv4 client)."""
        t = self._now()
        if t >= self._next_month or t < self._month_start:
            self._set_month(t)
        counter = next(self._counter) & 0xFFFF
        diff = int((t - self._month_start) * 1000) & 0xFFFFFFFF
        if diff != self._head_ms:
            self._head = f"{self._prefix}{diff:08X}"
            self._head_ms = diff
        return f"{self._head}{counter:04X}"


# --- value objects ----------------------------------------------------------------------------


@attrs.define
class Message:
    """A message as a producer builds it (Java ``Message``)."""

    topic: str
    body: bytes
    flag: int = 0
    properties: dict[str, str] = attrs.Factory(dict)

    @property
    def tags(self) -> str | None:
        """The ``TAGS`` property or None."""
        return self.properties.get(TAGS)

    @property
    def keys(self) -> list[str]:
        """The ``KEYS`` property split on spaces (empty entries dropped)."""
        return [k for k in self.properties.get(KEYS, "").split(KEY_SEPARATOR) if k]

    @property
    def unique_key(self) -> str | None:
        """The ``UNIQ_KEY`` property or None."""
        return self.properties.get(UNIQ_KEY)


@attrs.define
class MessageExt(Message):
    """A decoded stored record (Java ``MessageExt``); the body is inflated if needed."""

    queue_id: int = 0
    store_size: int = 0
    queue_offset: int = 0
    sys_flag: int = 0
    born_timestamp: int = 0
    born_host: str = ""
    store_timestamp: int = 0
    store_host: str = ""
    commit_log_offset: int = 0
    body_crc: int = 0
    reconsume_times: int = 0
    prepared_transaction_offset: int = 0
    offset_msg_id: str = ""

    @property
    def msg_id(self) -> str:
        """``UNIQ_KEY`` when present (what Java consumers show), else the offset message id."""
        return self.properties.get(UNIQ_KEY) or self.offset_msg_id


@attrs.define
class BrokerMessage:
    """What the broker hands the store (Java ``MessageExtBrokerInner``).

    ``properties_str`` is the encoded form written to disk; when empty it is computed from
    ``properties`` by :func:`encode_stored_record`. ``born_host``/``store_host`` are ``"ip:port"``.
    """

    topic: str
    queue_id: int
    body: bytes
    flag: int = 0
    properties: dict[str, str] = attrs.Factory(dict)
    properties_str: str = ""
    tags_code: int = 0
    born_timestamp: int = 0
    born_host: str = "127.0.0.1:0"
    store_host: str = "127.0.0.1:10911"
    sys_flag: int = 0
    reconsume_times: int = 0
    prepared_transaction_offset: int = 0

    @classmethod
    def from_message(
        cls,
        msg: Message,
        queue_id: int,
        *,
        born_timestamp: int = 0,
        born_host: str = "127.0.0.1:0",
        store_host: str = "127.0.0.1:10911",
        sys_flag: int = 0,
        reconsume_times: int = 0,
    ) -> BrokerMessage:
        """Build from a client :class:`Message` (computes the tags code and property string)."""
        props = dict(msg.properties)
        return cls(
            topic=msg.topic,
            queue_id=queue_id,
            body=msg.body,
            flag=msg.flag,
            properties=props,
            properties_str=properties_to_string(props),
            tags_code=tags_hash(props.get(TAGS)),
            born_timestamp=born_timestamp,
            born_host=born_host,
            store_host=store_host,
            sys_flag=sys_flag,
            reconsume_times=reconsume_times,
        )

    def keys_to_index(self) -> list[str]:
        """Index keys of this message: each ``KEYS`` entry and the ``UNIQ_KEY`` (unprefixed)."""
        out = [k for k in self.properties.get(KEYS, "").split(KEY_SEPARATOR) if k]
        uniq = self.properties.get(UNIQ_KEY)
        if uniq:
            out.append(uniq)
        return out


# --- stored record codec (§7.1) ---------------------------------------------------------------

_HEAD = struct.Struct(">iiiiiqqiq")  # size, magic, crc, qid, flag, qoffset, phys, sysflag, born ts
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_I16 = struct.Struct(">h")
_MID = struct.Struct(">iq")  # reconsume times, prepared transaction offset

# Offsets inside a record for fields the store patches or reads directly.
QUEUE_OFFSET_POS = 20
PHYSICAL_OFFSET_POS = 28
SYS_FLAG_POS = 36
BORN_HOST_POS = 48


def record_size(body_len: int, topic_len: int, props_len: int, sys_flag: int = 0) -> int:
    """TOTALSIZE of a stored record (91 + n + t + p for IPv4 hosts, +12 per IPv6 host)."""
    extra = (12 if sys_flag & MessageSysFlag.BORNHOST_V6_FLAG else 0) + (
        12 if sys_flag & MessageSysFlag.STOREHOSTADDRESS_V6_FLAG else 0
    )
    return 91 + body_len + topic_len + props_len + extra


_HEAD_V4 = struct.Struct(">iiiiiqqiq8sq8siqi")  # the fixed part with IPv4 hosts + body length


@functools.lru_cache(maxsize=4096)
def _topic_field(topic: str) -> bytes:
    """The TOPIC field (signed-byte length + bytes); ValueError beyond 127 bytes."""
    raw = topic.encode()
    if len(raw) > 127:
        raise ValueError("topic longer than 127 bytes")
    return bytes((len(raw),)) + raw


def encode_stored_record(
    msg: BrokerMessage,
    queue_offset: int,
    commit_log_offset: int,
    store_timestamp: int,
    body_crc: int | None = None,
) -> bytes:
    """Build one stored record (§7.1) with one ``b"".join``; sets the host v6 bits in SYSFLAG.

    Raises ValueError for a topic over 127 bytes or a property string over 32767 bytes.
    """
    born = encode_host(msg.born_host)
    store = encode_host(msg.store_host)
    topic = _topic_field(msg.topic)
    props = (msg.properties_str or properties_to_string(msg.properties)).encode()
    if len(props) > 32767:
        raise ValueError("properties longer than 32767 bytes")
    body = msg.body
    if body_crc is None:
        body_crc = zlib.crc32(body) & 0x7FFFFFFF
    sys_flag = msg.sys_flag & ~(
        MessageSysFlag.BORNHOST_V6_FLAG | MessageSysFlag.STOREHOSTADDRESS_V6_FLAG
    )
    if len(born) == 8 and len(store) == 8:
        return b"".join(
            (
                _HEAD_V4.pack(
                    90 + len(body) + len(topic) + len(props),
                    MESSAGE_MAGIC_CODE,
                    body_crc,
                    msg.queue_id,
                    msg.flag,
                    queue_offset,
                    commit_log_offset,
                    sys_flag,
                    msg.born_timestamp,
                    born,
                    store_timestamp,
                    store,
                    msg.reconsume_times,
                    msg.prepared_transaction_offset,
                    len(body),
                ),
                body,
                topic,
                _I16.pack(len(props)),
                props,
            )
        )
    if len(born) == 20:
        sys_flag |= MessageSysFlag.BORNHOST_V6_FLAG
    if len(store) == 20:
        sys_flag |= MessageSysFlag.STOREHOSTADDRESS_V6_FLAG
    total = 74 + len(born) + len(store) + len(body) + len(topic) + len(props)
    return b"".join(
        (
            _HEAD.pack(
                total,
                MESSAGE_MAGIC_CODE,
                body_crc,
                msg.queue_id,
                msg.flag,
                queue_offset,
                commit_log_offset,
                sys_flag,
                msg.born_timestamp,
            ),
            born,
            _I64.pack(store_timestamp),
            store,
            _MID.pack(msg.reconsume_times, msg.prepared_transaction_offset),
            _I32.pack(len(body)),
            body,
            topic,
            _I16.pack(len(props)),
            props,
        )
    )


def _store_host_pos(buf: bytes | memoryview, pos: int) -> tuple[int, int, int]:
    """(store host position, its length, sysflag) of the record at ``pos``."""
    (sys_flag,) = _I32.unpack_from(buf, pos + SYS_FLAG_POS)
    born_len = 20 if sys_flag & MessageSysFlag.BORNHOST_V6_FLAG else 8
    store_len = 20 if sys_flag & MessageSysFlag.STOREHOSTADDRESS_V6_FLAG else 8
    return pos + BORN_HOST_POS + born_len + 8, store_len, sys_flag


def record_offset_msg_id(buf: bytes | memoryview, pos: int = 0) -> str:
    """Offset message id of the encoded record at ``pos`` (store host + physical offset)."""
    hp, hl, _ = _store_host_pos(buf, pos)
    raw = bytes(buf[hp : hp + hl]) + bytes(buf[pos + PHYSICAL_OFFSET_POS : pos + 36])
    return raw.hex().upper()


def record_properties_str(buf: bytes | memoryview, pos: int = 0) -> str:
    """The property string of the encoded record at ``pos``."""
    hp, hl, _ = _store_host_pos(buf, pos)
    p = hp + hl + 12
    (blen,) = _I32.unpack_from(buf, p)
    p += 4 + blen
    p += 1 + buf[p]
    (plen,) = _I16.unpack_from(buf, p)
    return str(buf[p + 2 : p + 2 + plen], "utf-8")


class RecordError(ValueError):
    """A stored record is malformed (bad magic, inconsistent lengths, or a CRC mismatch)."""


def inflate_body(body: bytes, sys_flag: int) -> bytes:
    """Decompress a body whose sysFlag says it is compressed (zlib; LZ4/ZSTD left as is)."""
    if not sys_flag & MessageSysFlag.COMPRESSED_FLAG:
        return body
    kind = sys_flag & MessageSysFlag.COMPRESSION_TYPE_MASK
    if kind in (0, MessageSysFlag.COMPRESSION_ZLIB_TYPE):
        return zlib.decompress(body)
    return body


def decode_message(
    buf: bytes | memoryview,
    pos: int = 0,
    *,
    decompress: bool = True,
    check_crc: bool = False,
) -> MessageExt:
    """Decode the stored record starting at ``pos``; RecordError unless it is whole and valid."""
    mv = memoryview(buf)
    end_buf = len(mv)
    if pos + 8 > end_buf:
        raise RecordError("truncated record header")
    size, magic = struct.unpack_from(">ii", mv, pos)
    if magic != MESSAGE_MAGIC_CODE:
        raise RecordError(f"bad magic code {magic:#x} at {pos}")
    if size < 91 or pos + size > end_buf:
        raise RecordError(f"bad record size {size} at {pos}")
    (_, _, crc, qid, flag, qoff, phys, sys_flag, born_ts) = _HEAD.unpack_from(mv, pos)
    p = pos + _HEAD.size
    hlen = 20 if sys_flag & MessageSysFlag.BORNHOST_V6_FLAG else 8
    if size < record_size(0, 0, 0, sys_flag):
        raise RecordError(f"record size {size} too small for its host fields at {pos}")
    born_host = decode_host(mv[p : p + hlen])
    p += hlen
    (store_ts,) = _I64.unpack_from(mv, p)
    p += 8
    slen = 20 if sys_flag & MessageSysFlag.STOREHOSTADDRESS_V6_FLAG else 8
    store_raw = bytes(mv[p : p + slen])
    store_host = decode_host(store_raw)
    p += slen
    reconsume, prepared = _MID.unpack_from(mv, p)
    p += 12
    (blen,) = _I32.unpack_from(mv, p)
    p += 4
    if blen < 0 or p + blen + 3 > pos + size:
        raise RecordError(f"bad body length {blen} at {pos}")
    body = bytes(mv[p : p + blen])
    p += blen
    tlen = mv[p]
    p += 1
    topic = str(mv[p : p + tlen], "utf-8", "replace")
    p += tlen
    if p + 2 > pos + size:
        raise RecordError(f"bad topic length at {pos}")
    (plen,) = _I16.unpack_from(mv, p)
    p += 2
    if plen < 0 or p + plen != pos + size:
        raise RecordError(f"record size {size} does not match its fields at {pos}")
    props = string_to_properties(str(mv[p : p + plen], "utf-8", "replace")) if plen else {}
    if check_crc and zlib.crc32(body) & 0x7FFFFFFF != crc:
        raise RecordError(f"body CRC mismatch at {pos}")
    if decompress:
        try:
            body = inflate_body(body, sys_flag)
        except zlib.error as e:
            raise RecordError(f"compressed body does not inflate at {pos}: {e}") from e
    offset_id = (store_raw + _I64.pack(phys)).hex().upper()
    return MessageExt(
        topic=topic,
        body=body,
        flag=flag,
        properties=props,
        queue_id=qid,
        store_size=size,
        queue_offset=qoff,
        sys_flag=sys_flag,
        born_timestamp=born_ts,
        born_host=born_host,
        store_timestamp=store_ts,
        store_host=store_host,
        commit_log_offset=phys,
        body_crc=crc,
        reconsume_times=reconsume,
        prepared_transaction_offset=prepared,
        offset_msg_id=offset_id,
    )


def iter_records(buf: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """Yield ``(position, size)`` of each record in concatenated stored records."""
    mv = memoryview(buf)
    pos = 0
    n = len(mv)
    while pos + 8 <= n:
        (size,) = _I32.unpack_from(mv, pos)
        if size <= 0:
            break
        yield pos, size
        pos += size


def decode_messages(
    body: bytes | memoryview, *, decompress: bool = True, check_crc: bool = False
) -> list[MessageExt]:
    """Decode a pull/query/view body (stored records back to back); RecordError on a bad one."""
    out: list[MessageExt] = []
    mv = memoryview(body)
    pos = 0
    n = len(mv)
    while pos < n:
        m = decode_message(mv, pos, decompress=decompress, check_crc=check_crc)
        out.append(m)
        pos += m.store_size
    return out


# --- batch body (§7.6) ------------------------------------------------------------------------

_BATCH_HEAD = struct.Struct(">iiiii")  # size, magic 0, crc 0, flag, body length


def encode_batch(messages: Iterable[Message]) -> bytes:
    """Encode a SEND_BATCH_MESSAGE body (Java ``MessageDecoder.encodeMessages``)."""
    parts: list[bytes] = []
    for m in messages:
        props = properties_to_string(m.properties).encode()
        body = m.body
        parts.append(_BATCH_HEAD.pack(22 + len(body) + len(props), 0, 0, m.flag, len(body)))
        parts.append(body)
        parts.append(_I16.pack(len(props)))
        parts.append(props)
    return b"".join(parts)


def decode_batch(body: bytes | memoryview, topic: str = "") -> list[Message]:
    """Decode a batch body into messages of ``topic``; ValueError on inconsistent lengths."""
    mv = memoryview(body)
    out: list[Message] = []
    pos = 0
    n = len(mv)
    while pos < n:
        if pos + 22 > n:
            raise ValueError(f"truncated batch entry at {pos}")
        size, _, _, flag, blen = _BATCH_HEAD.unpack_from(mv, pos)
        if size < 22 or pos + size > n or blen < 0 or 22 + blen > size:
            raise ValueError(f"bad batch entry at {pos}")
        p = pos + 20
        data = bytes(mv[p : p + blen])
        p += blen
        (plen,) = _I16.unpack_from(mv, p)
        p += 2
        if plen < 0 or p + plen != pos + size:
            raise ValueError(f"batch entry size mismatch at {pos}")
        props = string_to_properties(str(mv[p : p + plen], "utf-8", "replace"))
        out.append(Message(topic=topic, body=data, flag=flag, properties=props))
        pos += size
    return out
