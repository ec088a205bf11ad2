"""Queue locks for orderly consumers: LOCK_BATCH_MQ (41) / UNLOCK_BATCH_MQ (42), protocol §5.8.

Java counterparts: ``RebalanceLockManager`` (the lock table) and the two cases of
``AdminBrokerProcessor`` (``lockBatchMQ``/``unlockBatchMQ``). A queue is granted to a client when it
is unlocked, its lock expired (``rebalanceLockMaxLiveTime``, 60 s after the last renewal, on the
injected clock), or it is already held by the same client id (which renews it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from rmq.common import fastjson
from rmq.common.asyncutil import now_ms
from rmq.common.errors import RMQError
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor

#: ``rocketmq.broker.rebalance.lockMaxLiveTime`` default (ms).
REBALANCE_LOCK_MAX_LIVE_TIME_MS = 60_000


@attrs.frozen(order=True)
class QueueId:
    """A message queue as the lock body names it (Java ``MessageQueue``)."""

    topic: str
    broker_name: str
    queue_id: int

    def to_json(self) -> dict[str, Any]:
        """The fastjson bean form (keys in Java's alphabetical order)."""
        return {"brokerName": self.broker_name, "queueId": self.queue_id, "topic": self.topic}

    @classmethod
    def from_json(cls, obj: Any) -> QueueId:
        """Read a MessageQueue bean; ValueError when it is not one."""
        if not isinstance(obj, dict):
            raise ValueError(f"message queue is not an object: {obj!r}")
        return cls(str(obj.get("topic", "")), str(obj.get("brokerName", "")), int(obj["queueId"]))


@attrs.define
class _LockEntry:
    client_id: str
    last_update_ms: int


class RebalanceLockManager:
    """Per-group queue locks with expiry (Java ``RebalanceLockManager``); no I/O."""

    log = Logger()

    def __init__(
        self, clock: IReactorTime, max_live_ms: int = REBALANCE_LOCK_MAX_LIVE_TIME_MS
    ) -> None:
        self._clock = clock
        self.max_live_ms = max_live_ms
        self._table: dict[str, dict[QueueId, _LockEntry]] = {}

    def _expired(self, entry: _LockEntry, now: int) -> bool:
        return now - entry.last_update_ms > self.max_live_ms

    def is_locked(self, group: str, mq: QueueId, client_id: str) -> bool:
        """True when ``client_id`` holds a live lock on ``mq`` in ``group``."""
        entry = self._table.get(group, {}).get(mq)
        return (
            entry is not None
            and entry.client_id == client_id
            and not self._expired(entry, now_ms(self._clock))
        )

    def try_lock_batch(self, group: str, mqs: Iterable[QueueId], client_id: str) -> list[QueueId]:
        """Lock (or renew) every queue of ``mqs`` that is free, expired or already ours.

        Returns the queues now held by ``client_id`` (Java's ``lockOKMQSet``), in request order.
        """
        now = now_ms(self._clock)
        table = self._table.setdefault(group, {})
        granted: list[QueueId] = []
        for mq in dict.fromkeys(mqs):
            entry = table.get(mq)
            if entry is None:
                table[mq] = _LockEntry(client_id, now)
                self.log.info(
                    "Queue {mq} of group {group} locked by {client}",
                    mq=mq,
                    group=group,
                    client=client_id,
                )
            elif entry.client_id == client_id:
                entry.last_update_ms = now
            elif self._expired(entry, now):
                self.log.warn(
                    "Queue {mq} of group {group}: expired lock of {old} taken over by {client}",
                    mq=mq,
                    group=group,
                    old=entry.client_id,
                    client=client_id,
                )
                table[mq] = _LockEntry(client_id, now)
            else:
                continue
            granted.append(mq)
        return granted

    def unlock_batch(self, group: str, mqs: Iterable[QueueId], client_id: str) -> None:
        """Release the queues of ``mqs`` that ``client_id`` holds (others are left alone)."""
        table = self._table.get(group)
        if not table:
            return
        for mq in mqs:
            entry = table.get(mq)
            if entry is not None and entry.client_id == client_id:
                del table[mq]
                self.log.info(
                    "Queue {mq} of group {group} unlocked by {client}",
                    mq=mq,
                    group=group,
                    client=client_id,
                )
        if not table:
            del self._table[group]


def _parse_body(body: bytes) -> tuple[str, str, list[QueueId]]:
    """``(consumerGroup, clientId, mqSet)`` of a Lock/UnlockBatchRequestBody."""
    try:
        obj = fastjson.loads_object(body, "body")
        mqs = [QueueId.from_json(m) for m in obj.get("mqSet") or []]
        return str(obj.get("consumerGroup") or ""), str(obj.get("clientId") or ""), mqs
    except (ValueError, KeyError, TypeError) as e:
        raise RMQError(f"bad lock request body: {e}", ResponseCode.SYSTEM_ERROR) from e


@implementer(IRequestProcessor)
class RebalanceLockProcessor:
    """LOCK_BATCH_MQ and UNLOCK_BATCH_MQ (Java ``AdminBrokerProcessor.lockBatchMQ``/``unlock``)."""

    def __init__(self, locks: RebalanceLockManager) -> None:
        self.locks = locks

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """LOCK answers ``{"lockOKMQSet":[...]}``; UNLOCK answers SUCCESS with no body."""
        group, client_id, mqs = _parse_body(request.body)
        if request.code == RequestCode.LOCK_BATCH_MQ:
            granted = self.locks.try_lock_batch(group, mqs, client_id)
            body = fastjson.dumps({"lockOKMQSet": [mq.to_json() for mq in granted]})
            return new_response(request, body=body)
        self.locks.unlock_batch(group, mqs, client_id)
        return new_response(request)
