"""Transactional messages: half messages, END_TRANSACTION (37) and the check-back service.

Protocol §5.7, §6.1, §10.10. Java counterparts: ``TransactionalMessageBridge`` (half and op
messages), ``EndTransactionProcessor``, ``TransactionalMessageServiceImpl.check`` and
``TransactionalMessageCheckService``, ``DefaultTransactionalMessageCheckListener``.

- :class:`TransactionHook` (send hook): a ``TRAN_MSG=true`` send of PREPARED type is stored as a
  half message in ``RMQ_SYS_TRANS_HALF_TOPIC`` queue 0 with ``REAL_TOPIC``/``REAL_QID`` and its
  transaction bits cleared; the producer is told the requested queue id and the half queue offset.
- :class:`EndTransactionProcessor`: commit (8) stores the final message on its real topic/queue
  (sysFlag COMMIT, prepared-transaction offset = the half message's commit-log offset) and writes an
  op record; rollback (12) writes only the op record; unknown (0) does nothing. Op records go to
  ``RMQ_SYS_TRANS_OP_HALF_TOPIC`` queue 0, tag ``d``, body = the half queue offset in decimal.
- :class:`TransactionalMessageCheckService`: half messages without an op record are checked
  ``transactionTimeOut`` (6 s, or ``CHECK_IMMUNITY_TIME_IN_SECONDS``) after they were stored, then
  every ``transactionCheckInterval`` (60 s): each check appends a copy of the half message with
  ``TRANSACTION_CHECK_TIMES`` + 1 (and ``TRAN_PREPARED_QUEUE_OFFSET`` = the offset it replaces) and
  sends CHECK_TRANSACTION_STATE (oneway) for the copy to one live producer of ``PGROUP``. After
  ``transactionCheckMax`` (15) checks the message is discarded: logged, copied to
  ``TRANS_CHECK_MAX_TIME_TOPIC`` and closed by an op record.

Everything the service knows is rebuilt from the store at start: its progress is the offset of
the internal group ``CID_RMQ_SYS_TRANS`` in the half and op topics (``consumerOffset.json``, as
Java keeps it), and it re-reads both queues from there. Checks are scheduled with ``callLater`` at
the exact due time of the earliest pending half message (no periodic scan while nothing is pending).
"""

from __future__ import annotations

import heapq
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rmq.broker.clients import ProducerManager
from rmq.broker.config import BrokerConfig
from rmq.broker.identity import BrokerIdentity
from rmq.broker.interfaces import ISendMessageHook
from rmq.broker.offsets import ConsumerOffsetManager
from rmq.broker.records import copy_record, read_batch, stored_properties
from rmq.broker.topic import (
    TRANS_CHECK_MAX_TIME_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TopicConfigManager,
)
from rmq.common.asyncutil import CoalescingRunner, deferred_api, now_ms
from rmq.common.errors import RMQError
from rmq.common.message import (
    CHECK_IMMUNITY_TIME_IN_SECONDS,
    PGROUP,
    REAL_QID,
    REAL_TOPIC,
    TAGS,
    TRAN_MSG,
    TRAN_PREPARED_QUEUE_OFFSET,
    TRANSACTION_CHECK_TIMES,
    UNIQ_KEY,
    BrokerMessage,
    MessageExt,
    MessageSysFlag,
    decode_message,
    encode_stored_record,
    properties_to_string,
    tags_hash,
)
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor
from rmq.store.interfaces import GetMessageStatus, IMessageStore, PutMessageResult

CID_RMQ_SYS_TRANS = "CID_RMQ_SYS_TRANS"
OP_TAG = "d"
COMMIT = MessageSysFlag.TRANSACTION_COMMIT_TYPE
ROLLBACK = MessageSysFlag.TRANSACTION_ROLLBACK_TYPE


@attrs.frozen
class TransactionConfig:
    """Check-back timing (Java ``BrokerConfig`` transaction keys), in ms."""

    #: ``transactionTimeOut``: age of a half message before its first check.
    timeout_ms: int = 6_000
    #: ``transactionCheckInterval``: time between two checks of the same message.
    check_interval_ms: int = 60_000
    #: ``transactionCheckMax``: checks before a half message is discarded.
    check_max: int = 15


@implementer(ISendMessageHook)
class TransactionHook:
    """Send hook turning ``TRAN_MSG=true`` PREPARED sends into half messages (§10.10 step 2)."""

    def __init__(self, config: BrokerConfig, identity: BrokerIdentity, topics: TopicConfigManager):
        self.config = config
        self.identity = identity
        self.topics = topics

    def before_put(self, context: Any) -> None:
        """Rewrite the message of ``context`` into ``RMQ_SYS_TRANS_HALF_TOPIC`` queue 0."""
        msg: BrokerMessage = context.message
        if msg.properties.get(TRAN_MSG, "").lower() != "true":
            return
        if (
            MessageSysFlag.transaction_type(msg.sys_flag)
            != MessageSysFlag.TRANSACTION_PREPARED_TYPE
        ):
            return
        if self.config.reject_transaction_message:
            raise RMQError(
                f"the broker[{self.identity.broker_ip1}] sending transaction message is forbidden",
                ResponseCode.NO_PERMISSION,
            )
        self.topics.create_topic_if_absent(TRANS_HALF_TOPIC, 1)
        props = msg.properties
        props[REAL_TOPIC] = msg.topic
        props[REAL_QID] = str(msg.queue_id)
        msg.topic = TRANS_HALF_TOPIC
        msg.queue_id = 0
        msg.sys_flag = MessageSysFlag.reset_transaction_type(
            msg.sys_flag, MessageSysFlag.TRANSACTION_NOT_TYPE
        )
        msg.properties_str = stored_properties(props)


def final_message(half: MessageExt) -> BrokerMessage:
    """The committed message for a half record (Java ``endMessageTransaction``).

    Properties stay as stored (``TRAN_MSG``, ``REAL_TOPIC``, ``REAL_QID`` included, as Java's
    stored record shows); sysFlag COMMIT; prepared-transaction offset = the half's commit offset.
    """
    props = {k: v for k, v in half.properties.items() if k != TRAN_PREPARED_QUEUE_OFFSET}
    return copy_record(
        half,
        props.get(REAL_TOPIC, half.topic),
        int(props.get(REAL_QID, "0")),
        props,
        sys_flag=MessageSysFlag.reset_transaction_type(half.sys_flag, COMMIT),
        prepared_transaction_offset=half.commit_log_offset,
    )


@attrs.define
class _Pending:
    queue_offset: int
    due_ms: int
    check_times: int


class TransactionalMessageCheckService:
    """Half-message bookkeeping and the check-back loop (see the module docstring)."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: IMessageStore,
        topics: TopicConfigManager,
        offsets: ConsumerOffsetManager,
        producers: ProducerManager,
        identity: BrokerIdentity,
        config: TransactionConfig | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self._topics = topics
        self._offsets = offsets
        self._producers = producers
        self._identity = identity
        self.config = config or TransactionConfig()
        self.progress = 0
        self._half_scanned = 0
        self._op_scanned = 0
        # Insertion order is queue order (records are scanned in order), so the first key is the
        # lowest pending offset; ``_due`` is a heap of (due ms, offset) with lazy deletion.
        self._pending: dict[int, _Pending] = {}
        self._due: list[tuple[int, int]] = []
        self._resolved: set[int] = set()
        self._superseded: dict[int, int] = {}
        self._op_entries: list[tuple[int, int]] = []
        self._runner = CoalescingRunner(clock, self._run, self._run_failed)
        #: Number of CHECK_TRANSACTION_STATE requests sent and half messages discarded.
        self.checks_sent = 0
        self.discarded = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._runner.active

    def start(self) -> Deferred[None]:
        """Resume from ``CID_RMQ_SYS_TRANS``'s offsets and scan both queues."""
        half = self._offsets.query_offset(CID_RMQ_SYS_TRANS, TRANS_HALF_TOPIC, 0)
        op = self._offsets.query_offset(CID_RMQ_SYS_TRANS, TRANS_OP_HALF_TOPIC, 0)
        self.progress = self._half_scanned = max(
            half, self._store.get_min_offset_in_queue(TRANS_HALF_TOPIC, 0), 0
        )
        self._op_scanned = max(op, self._store.get_min_offset_in_queue(TRANS_OP_HALF_TOPIC, 0), 0)
        self._store.add_arrival_listener(self._on_arrival)
        self._runner.start()
        return succeed(None)

    def stop(self) -> Deferred[None]:
        """Cancel the pending check and record the progress."""
        self._runner.stop()
        self._store.remove_arrival_listener(self._on_arrival)
        self._save_progress()
        return succeed(None)

    def pending_offsets(self) -> list[int]:
        """Half queue offsets still waiting for a commit/rollback, in order."""
        return sorted(self._pending)

    # -- resolution -------------------------------------------------------------------------

    def current(self, queue_offset: int) -> int | None:
        """The half offset that now stands for ``queue_offset`` (following check copies), or
        None when its transaction is already resolved or behind the progress."""
        seen = 0
        while queue_offset in self._superseded and seen < 64:
            queue_offset = self._superseded[queue_offset]
            seen += 1
        if queue_offset < self.progress or queue_offset in self._resolved:
            return None
        return queue_offset

    def resolved(self, queue_offset: int) -> None:
        """Note that an op record for ``queue_offset`` was written."""
        self._resolved.add(queue_offset)
        self._pending.pop(queue_offset, None)

    def put_op(self, half_queue_offset: int) -> Deferred[PutMessageResult]:
        """Write the op record closing ``half_queue_offset`` (tag ``d``, body = the offset)."""
        self._topics.create_topic_if_absent(TRANS_OP_HALF_TOPIC, 1)
        addr = self._identity.broker_addr
        props = {TAGS: OP_TAG}
        msg = BrokerMessage(
            topic=TRANS_OP_HALF_TOPIC,
            queue_id=0,
            body=str(half_queue_offset).encode(),
            properties=props,
            properties_str=properties_to_string(props),
            tags_code=tags_hash(OP_TAG),
            born_timestamp=now_ms(self._clock),
            born_host=addr,
            store_host=addr,
        )
        self.resolved(half_queue_offset)
        return self._store.put_message(msg)

    # -- the check loop ---------------------------------------------------------------------

    def _on_arrival(self, topic: str, queue_id: int, queue_offset: int, tags_code: int) -> None:
        if topic in (TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC):
            self.kick()

    def kick(self) -> None:
        """Scan new half/op records and check what is due (at most one run at a time)."""
        self._runner.kick()

    def _run_failed(self, failure: Failure) -> None:
        self.log.failure("Transaction check failed", failure)
        self._runner.run_at(now_ms(self._clock) + self.config.check_interval_ms)

    async def _records(self, topic: str, start: int) -> list[tuple[int, MessageExt]]:
        out: list[tuple[int, MessageExt]] = []
        offset = start
        high = self._store.get_max_offset_in_queue(topic, 0)
        while True:
            got, offset = await read_batch(self._store, topic, 0, offset, high)
            if got is None:
                break
            for raw, qoff in zip(got.messages, got.queue_offsets, strict=False):
                out.append((qoff, decode_message(raw, decompress=False)))
                offset = qoff + 1
        return out

    @deferred_api
    async def _run(self) -> None:
        for qoff, ext in await self._records(TRANS_OP_HALF_TOPIC, self._op_scanned):
            self._op_scanned = qoff + 1
            if ext.properties.get(TAGS) != OP_TAG:
                continue
            for part in ext.body.decode("utf-8", "replace").split(","):
                if part.strip().isdigit():
                    half = int(part)
                    self._op_entries.append((qoff, half))
                    self.resolved(half)
        for qoff, ext in await self._records(TRANS_HALF_TOPIC, self._half_scanned):
            self._half_scanned = qoff + 1
            replaced = ext.properties.get(TRAN_PREPARED_QUEUE_OFFSET)
            if replaced is not None and replaced.isdigit():
                self._superseded[int(replaced)] = qoff
                self._pending.pop(int(replaced), None)
            if qoff in self._resolved or qoff in self._superseded:
                continue
            times = int(ext.properties.get(TRANSACTION_CHECK_TIMES, "0") or 0)
            wait = self.config.check_interval_ms if times else self.config.timeout_ms
            immunity = ext.properties.get(CHECK_IMMUNITY_TIME_IN_SECONDS)
            if not times and immunity and immunity.isdigit():
                wait = max(wait, int(immunity) * 1000)
            self._add_pending(_Pending(qoff, ext.store_timestamp + wait, times))
        while self.running:
            head = self._due_head()
            if head is None or head.due_ms > now_ms(self._clock):
                break
            heapq.heappop(self._due)
            await self._check(head)
        self._save_progress()
        head = self._due_head()
        if head is not None:
            self._runner.run_at(head.due_ms)

    def _add_pending(self, pending: _Pending) -> None:
        self._pending[pending.queue_offset] = pending
        heapq.heappush(self._due, (pending.due_ms, pending.queue_offset))

    def _due_head(self) -> _Pending | None:
        """The pending half message due first (stale heap entries are dropped)."""
        while self._due:
            due, qoff = self._due[0]
            p = self._pending.get(qoff)
            if p is not None and p.due_ms == due:
                return p
            heapq.heappop(self._due)
        return None

    async def _check(self, pending: _Pending) -> None:
        qoff = pending.queue_offset
        got = await self._store.get_messages(TRANS_HALF_TOPIC, 0, qoff, 1)
        if got.status is not GetMessageStatus.FOUND or not got.messages:
            self.log.warn("Half message at offset {offset} is gone; dropped", offset=qoff)
            self._pending.pop(qoff, None)
            self._resolved.add(qoff)
            return
        half = decode_message(got.messages[0], decompress=False)
        if pending.check_times >= self.config.check_max:
            await self._discard(qoff, half)
            return
        props = dict(half.properties)
        props[TRANSACTION_CHECK_TIMES] = str(pending.check_times + 1)
        props[TRAN_PREPARED_QUEUE_OFFSET] = str(qoff)
        copy = copy_record(half, TRANS_HALF_TOPIC, 0, props)
        result = await self._store.put_message(copy)
        if not result.status.stored:
            self.log.error(
                "Copying half message {offset} for its check failed: {status}",
                offset=qoff,
                status=result.status.value,
            )
            pending.due_ms = now_ms(self._clock) + self.config.check_interval_ms
            heapq.heappush(self._due, (pending.due_ms, qoff))
            return
        self._pending.pop(qoff, None)
        self._superseded[qoff] = result.queue_offset
        self._send_check(copy, result)

    def _send_check(self, copy: BrokerMessage, result: PutMessageResult) -> None:
        props = copy.properties
        group = props.get(PGROUP, "")
        conn = self._producers.available_connection(group)
        if conn is None:
            self.log.warn(
                "No live producer of group {group} to check transaction {id}",
                group=group,
                id=props.get(UNIQ_KEY),
            )
            return
        real = attrs.evolve(
            copy,
            topic=props.get(REAL_TOPIC, copy.topic),
            queue_id=int(props.get(REAL_QID, "0")),
            properties_str=properties_to_string(props),
        )
        body = encode_stored_record(
            real, result.queue_offset, result.wrote_offset, result.store_timestamp
        )
        uniq = props.get(UNIQ_KEY)
        command = new_request(
            RequestCode.CHECK_TRANSACTION_STATE,
            {
                "tranStateTableOffset": result.queue_offset,
                "commitLogOffset": result.wrote_offset,
                "msgId": uniq,
                "transactionId": uniq,
                "offsetMsgId": result.msg_id,
            },
            body,
            oneway=True,
        )
        self.checks_sent += 1
        self.log.info(
            "Checking transaction {id} of {group} (check {n}, half offset {offset})",
            id=uniq,
            group=group,
            n=props.get(TRANSACTION_CHECK_TIMES),
            offset=result.queue_offset,
        )
        conn.send_oneway(command)

    async def _discard(self, qoff: int, half: MessageExt) -> None:
        self.discarded += 1
        self.log.warn(
            "Transaction {id} of producer group {group} discarded after {n} checks "
            "(half offset {offset}); copied to {topic}",
            id=half.properties.get(UNIQ_KEY),
            group=half.properties.get(PGROUP),
            n=self.config.check_max,
            offset=qoff,
            topic=TRANS_CHECK_MAX_TIME_TOPIC,
        )
        self._topics.create_topic_if_absent(TRANS_CHECK_MAX_TIME_TOPIC, 1)
        given_up = copy_record(half, TRANS_CHECK_MAX_TIME_TOPIC, 0, dict(half.properties))
        await self._store.put_message(given_up)
        await self.put_op(qoff)

    def _save_progress(self) -> None:
        progress = next(iter(self._pending)) if self._pending else self._half_scanned
        if progress > self.progress:
            self.progress = p = progress
            self._resolved = {q for q in self._resolved if q >= p}
            # Keep a replaced offset while the copy standing for it may still be answered.
            self._superseded = {a: b for a, b in self._superseded.items() if b >= p}
            self._op_entries = [(o, h) for o, h in self._op_entries if h >= p]
        p = self.progress
        op_progress = self._op_entries[0][0] if self._op_entries else self._op_scanned
        self._offsets.commit_offset(CID_RMQ_SYS_TRANS, TRANS_HALF_TOPIC, 0, p)
        self._offsets.commit_offset(CID_RMQ_SYS_TRANS, TRANS_OP_HALF_TOPIC, 0, op_progress)


@implementer(IRequestProcessor)
class EndTransactionProcessor:
    """END_TRANSACTION (Java ``EndTransactionProcessor``); answers SUCCESS (never sent: oneway)."""

    log = Logger()

    def __init__(
        self,
        config: BrokerConfig,
        store: IMessageStore,
        service: TransactionalMessageCheckService,
    ) -> None:
        self.config = config
        self.store = store
        self.service = service

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> Deferred[RemotingCommand | None]:
        """Commit or roll back; errors become SYSTEM_ERROR (logged by dispatch for oneway)."""
        return self._process(connection, request)

    @deferred_api
    async def _process(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand | None:
        group = request.ext_str("producerGroup")
        table_offset = request.ext_int("tranStateTableOffset")
        commit_offset = request.ext_int("commitLogOffset")
        kind = request.ext_int("commitOrRollback")
        if not self.config.is_master:
            raise RMQError(
                "Can't process transaction message in slave broker",
                ResponseCode.SLAVE_NOT_AVAILABLE,
            )
        if kind not in (COMMIT, ROLLBACK):
            return None
        raw = await self.store.look_message_by_offset(commit_offset)
        if raw is None:
            raise RMQError(
                f"Find prepared transaction message failed, commitLogOffset {commit_offset}",
                ResponseCode.SYSTEM_ERROR,
            )
        half = decode_message(raw, decompress=False)
        problem = None
        if half.topic != TRANS_HALF_TOPIC:
            problem = f"the message at {commit_offset} is not a half message"
        elif half.properties.get(PGROUP) != group:
            problem = "The producer group wrong"
        elif half.queue_offset != table_offset:
            problem = "The transaction state table offset wrong"
        elif half.commit_log_offset != commit_offset:
            problem = "The commit log offset wrong"
        if problem is not None:
            raise RMQError(problem, ResponseCode.SYSTEM_ERROR)
        target = self.service.current(table_offset)
        if target is None:
            self.log.info(
                "END_TRANSACTION for {id} ignored: its transaction is already resolved",
                id=half.properties.get(UNIQ_KEY),
            )
            return new_response(request)
        if kind == COMMIT:
            result = await self.store.put_message(final_message(half))
            if not result.status.stored:
                return new_response(
                    request, ResponseCode.SYSTEM_ERROR, result.remark or result.status.value
                )
        op = await self.service.put_op(target)
        if not op.status.stored:
            self.log.error(
                "Writing the op record of half offset {offset} failed: {status}",
                offset=target,
                status=op.status.value,
            )
        self.log.debug(
            "Transaction {id} of {group}: {what}",
            id=half.properties.get(UNIQ_KEY),
            group=group,
            what="commit" if kind == COMMIT else "rollback",
        )
        return new_response(request)
