"""Store rules shared by the memory and file stores: put checks, tags codes, get statuses.

Java counterparts: ``DefaultMessageStore.checkMessage``/``getMessage``,
``CommitLog.checkMessageAndReturnSize`` (schedule-topic tags code) and ``IndexService.buildKey``.
"""

from __future__ import annotations

from collections.abc import Callable

from rmq.common.message import (
    DELAY,
    KEY_SEPARATOR,
    KEYS,
    UNIQ_KEY,
    BrokerMessage,
    MessageSysFlag,
    properties_to_string,
    string_to_properties,
)
from rmq.store.interfaces import (
    GetMessageResult,
    GetMessageStatus,
    PutMessageResult,
    PutMessageStatus,
)

SCHEDULE_TOPIC = "SCHEDULE_TOPIC_XXXX"


def prepare(msg: BrokerMessage, max_message_size: int) -> PutMessageResult | None:
    """Fill ``properties_str`` if empty and check sizes; a failure result, or None when fine."""
    if not msg.properties_str and msg.properties:
        msg.properties_str = properties_to_string(msg.properties)
    topic = msg.topic
    if not topic or "/" in topic or "\0" in topic or topic in (".", ".."):
        # the topic names a consume-queue directory
        return PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL, remark=f"bad topic {topic!r}")
    if len(topic) <= 42 and len(msg.properties_str) <= 10922 and len(msg.body) <= max_message_size:
        return None  # fast path: even 3-byte UTF-8 characters fit
    if len(topic.encode()) > 127:
        return PutMessageResult(PutMessageStatus.MESSAGE_ILLEGAL, remark="topic too long")
    if len(msg.properties_str) > 32767 and len(msg.properties_str.encode()) > 32767:
        return PutMessageResult(
            PutMessageStatus.PROPERTIES_SIZE_EXCEEDED, remark="properties longer than 32767 bytes"
        )
    if len(msg.body) > max_message_size:
        return PutMessageResult(
            PutMessageStatus.MESSAGE_ILLEGAL,
            remark=f"message body longer than maxMessageSize {max_message_size}",
        )
    return None


def goes_to_consume_queue(sys_flag: int) -> bool:
    """Records of transaction type NOT or COMMIT get a consume-queue unit; PREPARED/ROLLBACK not."""
    kind = sys_flag & MessageSysFlag.TRANSACTION_TYPE_MASK
    return kind in (MessageSysFlag.TRANSACTION_NOT_TYPE, MessageSysFlag.TRANSACTION_COMMIT_TYPE)


def dispatch_tags_code(
    topic: str, tags_code: int, props: dict[str, str], store_ts: int, delays: dict[int, int]
) -> int:
    """The unit's tags code: the tag hash, except in SCHEDULE_TOPIC_XXXX the delivery time."""
    if topic == SCHEDULE_TOPIC:
        level_s = props.get(DELAY)
        if level_s:
            try:
                level = int(level_s)
            except ValueError:
                return tags_code
            if level > 0 and delays:
                level = min(level, max(delays))
                return store_ts + delays[level]
    return tags_code


def index_keys(topic: str, props: dict[str, str]) -> list[str]:
    """Index keys ``topic#key`` for each KEYS entry and for UNIQ_KEY (Java ``buildKey``)."""
    raw = props.get(KEYS)
    keys = [f"{topic}#{k}" for k in raw.split(KEY_SEPARATOR) if k] if raw else []
    uniq = props.get(UNIQ_KEY)
    if uniq:
        keys.append(f"{topic}#{uniq}")
    return keys


def key_matches(key: str, props_str: str) -> bool:
    """True when ``key`` is one of the KEYS entries or the UNIQ_KEY in a property string."""
    props = string_to_properties(props_str)
    return key == props.get(UNIQ_KEY) or key in props.get(KEYS, "").split(KEY_SEPARATOR)


def offset_status(
    offset: int, min_offset: int, max_offset: int
) -> tuple[GetMessageStatus, int] | None:
    """Java ``getMessage``'s answer for an offset outside [min, max), or None to read units."""
    if max_offset == 0:
        return GetMessageStatus.NO_MESSAGE_IN_QUEUE, 0
    if offset < min_offset:
        return GetMessageStatus.OFFSET_TOO_SMALL, min_offset
    if offset == max_offset:
        return GetMessageStatus.OFFSET_OVERFLOW_ONE, offset
    if offset > max_offset:
        return GetMessageStatus.OFFSET_OVERFLOW_BADLY, min_offset if min_offset == 0 else max_offset
    return None


def begin_get(offset: int, min_offset: int, max_offset: int) -> tuple[GetMessageResult, bool]:
    """The result a ``get_messages`` read starts from, and whether it is already the answer.

    For an offset outside [min, max) that is Java ``getMessage``'s status (see
    :func:`offset_status`), final; otherwise an empty NO_MATCHED_MESSAGE result at ``offset``
    for the store to fill while it reads units.
    """
    early = offset_status(offset, min_offset, max_offset)
    if early is not None:
        return GetMessageResult(early[0], early[1], min_offset, max_offset), True
    return (
        GetMessageResult(GetMessageStatus.NO_MATCHED_MESSAGE, offset, min_offset, max_offset),
        False,
    )


def search_by_time(
    lo: int, hi: int, store_time: Callable[[int], int], timestamp_ms: int, nearest: bool
) -> int:
    """Queue offset for a time, by binary search over offsets ``[lo, hi)`` whose store times
    (``store_time(offset)``; -1 for a unit without a record, ordered as earlier) never decrease.

    ``nearest=False``: the first offset stored at or after ``timestamp_ms`` (``hi`` if none).
    ``nearest=True`` is Java ``ConsumeQueue.getOffsetInQueueByTime``: an offset stored exactly
    at ``timestamp_ms`` (here the first such), otherwise the nearer of the last offset before
    and the first after, the earlier one on a tie, the only one at either end (so the last
    message's offset, not ``hi``, for a time after all of them); 0 for an empty range.
    """
    if hi <= lo:
        return 0
    first, last = lo, hi
    while first < last:  # first offset whose time is >= timestamp_ms
        mid = (first + last) // 2
        if store_time(mid) < timestamp_ms:
            first = mid + 1
        else:
            last = mid
    if not nearest:
        return first
    after = store_time(first) if first < hi else -1
    if after == timestamp_ms:
        return first
    before_off = first - 1
    while before_off >= lo and store_time(before_off) < 0:
        before_off -= 1  # units without a record are no candidates
    before = store_time(before_off) if before_off >= lo else -1
    if before < 0:
        return first if first < hi else lo
    if after < 0:
        return before_off
    return first if after - timestamp_ms < timestamp_ms - before else before_off


MAX_FILTER_UNITS = 800
"""Units scanned per get when a tag filter rejects messages (Java: max(16000 B, n*20) of units)."""
