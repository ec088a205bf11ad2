"""Queue allocation strategies, with results identical to Java's.

Java: ``AllocateMessageQueueAveragely``, ``AllocateMessageQueueAveragelyByCircle``,
``AllocateMessageQueueConsistentHash`` (MD5 ring, 10 virtual nodes per client by default),
``AllocateMessageQueueByConfig``.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

import attrs
from zope.interface import implementer

from rmq.client.interfaces import IAllocateStrategy
from rmq.client.message_queue import MessageQueue


def _index(current_cid: str, cid_all: Sequence[str]) -> int:
    """Position of ``current_cid`` in ``cid_all`` (-1: not a member); ValueError when empty."""
    if not current_cid:
        raise ValueError("current_cid is empty")
    if not cid_all:
        raise ValueError("cid_all is empty")
    try:
        return list(cid_all).index(current_cid)
    except ValueError:
        return -1


@implementer(IAllocateStrategy)
class AllocateMessageQueueAveragely:
    """Contiguous blocks of queues per client, the first ``n % c`` clients one more (default)."""

    name = "AVG"

    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        """Return client ``current_cid``'s block of ``mq_all`` (protocol §10.4)."""
        i = _index(current_cid, cid_all)
        n, c = len(mq_all), len(cid_all)
        if i < 0 or n == 0:
            return []
        mod = n % c
        if n <= c:
            avg = 1
        elif mod > 0 and i < mod:
            avg = n // c + 1
        else:
            avg = n // c
        start = i * avg if (mod > 0 and i < mod) else i * avg + mod
        count = min(avg, n - start)
        return [mq_all[(start + k) % n] for k in range(max(count, 0))]


@implementer(IAllocateStrategy)
class AllocateMessageQueueAveragelyByCircle:
    """Queue ``k`` goes to client ``k % c`` (round-robin dealing)."""

    name = "AVG_BY_CIRCLE"

    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        """Return every ``len(cid_all)``-th queue starting at this client's index."""
        i = _index(current_cid, cid_all)
        if i < 0:
            return []
        return list(mq_all[i :: len(cid_all)])


def md5_ring_hash(key: str) -> int:
    """Java ``ConsistentHashRouter.MD5Hash``: the first 4 digest bytes as an unsigned number."""
    return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:4], "big")


@implementer(IAllocateStrategy)
@attrs.define
class AllocateMessageQueueConsistentHash:
    """MD5 hash ring of ``virtual_nodes`` points per client (``"<cid>-<i>"``).

    Queues are looked up by ``MessageQueue.toString()``; a later virtual node overwrites an equal
    hash, like Java's TreeMap."""

    virtual_nodes: int = 10
    name = "CONSISTENT_HASH"

    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        """Return the queues whose ring successor belongs to ``current_cid``."""
        if _index(current_cid, cid_all) < 0 or not mq_all:
            return []
        ring: dict[int, str] = {}
        for cid in cid_all:
            # Java counts replicas already on the ring for this key (duplicate cids add more).
            existing = sum(1 for owner in ring.values() if owner == cid)
            for k in range(self.virtual_nodes):
                ring[md5_ring_hash(f"{cid}-{k + existing}")] = cid
        if not ring:
            return []
        points = sorted(ring)
        mine = []
        for mq in mq_all:
            h = md5_ring_hash(mq.java_str())
            pos = bisect.bisect_left(points, h)
            owner = ring[points[pos] if pos < len(points) else points[0]]
            if owner == current_cid:
                mine.append(mq)
        return mine


@implementer(IAllocateStrategy)
@attrs.define
class AllocateMessageQueueByConfig:
    """A fixed list of queues, whatever the group looks like."""

    queues: list[MessageQueue]
    name = "CONFIG"

    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        """Return the configured queues."""
        return list(self.queues)
