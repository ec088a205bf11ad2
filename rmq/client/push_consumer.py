"""The push consumer (Java ``DefaultMQPushConsumer``): pulled messages go to a listener,
concurrently (Java ``ConsumeMessageConcurrentlyService``) or one queue at a time in offset order
under a broker lock (Java ``ConsumeMessageOrderlyService``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Unpack

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from rmq.client.consumer import (
    BaseConsumer,
    ConsumeResult,
    ConsumerOptions,
    MessageModel,
    ProcessQueue,
)
from rmq.client.message_queue import MessageQueue
from rmq.common.asyncutil import deferred_api, log_failure
from rmq.common.errors import MQClientError, RMQError
from rmq.common.message import (
    DELAY,
    MAX_RECONSUME_TIMES,
    ORIGIN_MESSAGE_ID,
    RECONSUME_TIME,
    RETRY_TOPIC,
    TRAN_MSG,
    Message,
    MessageExt,
)

#: Orderly consumers renew their queue locks this often (s); a lock older than LOCK_MAX_LIVE s
#: stops consumption (Java ``REBALANCE_LOCK_INTERVAL`` / ``REBALANCE_LOCK_MAX_LIVE_TIME``).
LOCK_RENEW_INTERVAL = 20.0
LOCK_MAX_LIVE = 30.0

#: A listener returns, or fires a Deferred with, a ConsumeResult (or its name as a string).
Listener = Callable[[list[MessageExt]], Any]


class PushConsumer(BaseConsumer):
    """Consumes subscribed topics by calling ``listener(msgs)``.

    The listener gets a list of messages (``consume_batch_size``, default 1) and returns, or
    fires a Deferred with, ``CONSUME_SUCCESS`` or ``RECONSUME_LATER`` (an exception counts as
    RECONSUME_LATER). Concurrent mode runs up to ``consume_concurrency`` listener calls at once;
    failed messages are sent back to the broker (CONSUMER_SEND_MSG_BACK) for redelivery through
    ``%RETRY%<group>``; if that request fails they are re-sent there with the client's inner
    producer, and only if that fails too retried locally after 5 s. Orderly mode
    (``orderly=True``) locks each queue on its broker (LOCK_BATCH_MQ), consumes one queue's
    messages one batch at a time in offset order, and retries a failed batch locally after
    ``suspend_current_queue_time`` (1 s); a message that failed ``max_reconsume_times`` retries
    (``-1`` = 16) goes to ``%DLQ%<group>`` and the queue moves on.

    The other keyword arguments (message model, start offset, allocation, pull sizes, client
    instance settings) are :class:`~rmq.client.consumer.ConsumerOptions`.
    """

    def __init__(
        self,
        group: str,
        namesrv_addr: str | None = None,
        clock: IReactorTime | None = None,
        *,
        listener: Listener | None = None,
        orderly: bool = False,
        consume_batch_size: int = 1,
        consume_concurrency: int = 20,
        max_reconsume_times: int = -1,
        suspend_current_queue_time: float = 1.0,
        **options: Unpack[ConsumerOptions],
    ) -> None:
        super().__init__(group, namesrv_addr, clock, **options)
        self.listener = listener
        self.orderly = orderly
        self.consume_batch_size = max(1, consume_batch_size)
        self.max_reconsume_times = max_reconsume_times
        self.suspend_current_queue_time = suspend_current_queue_time
        self._consume_limit = max(1, consume_concurrency)
        self._consuming_now = 0
        self._draining = False
        self._consume_backlog: deque[tuple[MessageQueue, ProcessQueue, list[MessageExt]]] = deque()

    def register_listener(self, listener: Listener) -> None:
        """Set the message listener (before start)."""
        self.listener = listener

    @deferred_api
    async def start(self) -> None:
        """Start consuming (MQClientError if no listener or no subscription)."""
        if self.listener is None:
            raise MQClientError("messageListener is null")
        if not self.subscriptions:
            raise MQClientError("no subscription: call subscribe() first")
        await super().start()
        if self.orderly and self.message_model is MessageModel.CLUSTERING:
            self._schedule_lock_renewal()

    # --- listener calls -----------------------------------------------------------------------

    def _invoke_listener(self, msgs: list[MessageExt]) -> Deferred[ConsumeResult]:
        assert self.listener is not None
        d: Deferred[Any] = maybeDeferred(self.listener, msgs)
        return d.addCallbacks(self._check_result, self._listener_failed)

    def _check_result(self, result: object) -> ConsumeResult:
        """A listener's answer as a ConsumeResult (its name as a string counts too)."""
        if isinstance(result, ConsumeResult):
            return result
        if result in ("CONSUME_SUCCESS", "SUCCESS"):
            return ConsumeResult.CONSUME_SUCCESS
        if result is None:
            self.log.warn("Listener returned None; counted as RECONSUME_LATER")
        return ConsumeResult.RECONSUME_LATER

    def _listener_failed(self, f: Any) -> ConsumeResult:
        self.log.failure("Listener of {g} raised", f, g=self.group)
        return ConsumeResult.RECONSUME_LATER

    def _restore_retry_topic(self, msgs: Sequence[MessageExt]) -> None:
        retry = self.retry_topic
        for m in msgs:
            if m.topic == retry:
                real = m.properties.get(RETRY_TOPIC)
                if real:
                    m.topic = real

    def _on_messages(self, mq: MessageQueue, pq: ProcessQueue, msgs: list[MessageExt]) -> None:
        if self.orderly:
            self._kick_orderly(mq, pq)
            return
        for i in range(0, len(msgs), self.consume_batch_size):
            batch = msgs[i : i + self.consume_batch_size]
            self._submit_concurrent(mq, pq, batch)

    # --- concurrent ---------------------------------------------------------------------------

    def _submit_concurrent(
        self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt]
    ) -> None:
        if self._consuming_now >= self._consume_limit or self._draining:
            self._consume_backlog.append((mq, pq, batch))
            if not self._draining:
                self._drain_backlog()
            return
        self._run_concurrent(mq, pq, batch)

    def _run_concurrent(self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt]) -> None:
        """Call the listener; a plain return value is handled at once (no Deferred needed)."""
        if pq.dropped or not self.running:
            return
        assert self.listener is not None
        self._restore_retry_topic(batch)
        self._consuming_now += 1
        try:
            result: object = self.listener(batch)
        except Exception:
            self.log.failure("Listener of {g} raised", g=self.group)
            result = ConsumeResult.RECONSUME_LATER
        if isinstance(result, Deferred):
            result.addCallbacks(self._check_result, self._listener_failed).addCallback(
                lambda st: self._finish_concurrent(mq, pq, batch, st)
            ).addErrback(log_failure(f"consume of {mq.java_str()}"))
        else:
            self._finish_concurrent(mq, pq, batch, self._check_result(result))

    def _finish_concurrent(
        self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt], status: ConsumeResult
    ) -> None:
        self._consuming_now -= 1
        try:
            if pq.dropped:
                return
            if status is ConsumeResult.CONSUME_SUCCESS:
                self._consumed(mq, pq, batch)
            elif self.message_model is MessageModel.BROADCASTING:
                for m in batch:
                    self.log.warn("Broadcast message {id} failed; dropped", id=m.msg_id)
                self._consumed(mq, pq, batch)
            else:
                d = Deferred.fromCoroutine(self._send_back_batch(mq, pq, batch))
                d.addErrback(log_failure(f"send back from {mq.java_str()}"))
        finally:
            if not self._draining:
                self._drain_backlog()

    def _drain_backlog(self) -> None:
        self._draining = True
        try:
            while self._consume_backlog and self._consuming_now < self._consume_limit:
                self._run_concurrent(*self._consume_backlog.popleft())
        finally:
            self._draining = False

    async def _send_back_batch(
        self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt]
    ) -> None:
        ok: list[MessageExt] = []
        failed_back: list[MessageExt] = []
        for m in batch:
            (ok if await self._send_back(m, mq) else failed_back).append(m)
        self._consumed(mq, pq, ok)
        if failed_back:
            for m in failed_back:
                m.reconsume_times += 1
            self._later(5.0, lambda: self._submit_concurrent(mq, pq, failed_back))

    def _max_reconsume(self) -> int:
        """The effective max reconsume times (``-1`` means 16, for orderly consumers too)."""
        return 16 if self.max_reconsume_times == -1 else self.max_reconsume_times

    async def _send_back(self, msg: MessageExt, mq: MessageQueue) -> bool:
        """CONSUMER_SEND_MSG_BACK (delay level 0: the broker decides); if that fails, re-send
        through the inner producer (Java ``DefaultMQPushConsumerImpl.sendMessageBack``).
        True when one of them stored the message."""
        inst = self.instance
        addr = inst.master_addr(mq.broker_name) or msg.store_host
        try:
            await inst.api.send_back(
                addr, msg, self.group, 0, self._max_reconsume(), mq.broker_name
            )
            return True
        except RMQError as e:
            self.log.warn(
                "Send back of {id} failed: {e}; re-sending to the retry topic", id=msg.msg_id, e=e
            )
        try:
            await self._resend_to_retry(msg, msg.reconsume_times + 1)
            return True
        except RMQError as e:
            self.log.warn("Re-send of {id} to the retry topic failed: {e}", id=msg.msg_id, e=e)
            return False

    async def _resend_to_retry(self, msg: MessageExt, reconsume_time: int) -> None:
        """Send a copy of ``msg`` to ``%RETRY%<group>`` with the inner producer.

        The copy keeps body, flag and properties (so ``UNIQ_KEY``), and carries ``RETRY_TOPIC``,
        ``ORIGIN_MESSAGE_ID``, ``RECONSUME_TIME`` = ``reconsume_time``, ``MAX_RECONSUME_TIMES`` and
        delay level ``3 + reconsumeTimes``. The send header's ``reconsumeTimes`` /
        ``maxReconsumeTimes`` come from those properties, so a broker (rmq's or Java's) files
        the copy into ``%DLQ%<group>`` once ``reconsume_time`` reaches the maximum.
        """
        props = dict(msg.properties)
        props.pop(TRAN_MSG, None)
        props[ORIGIN_MESSAGE_ID] = props.get(ORIGIN_MESSAGE_ID) or msg.msg_id
        props[RETRY_TOPIC] = msg.topic
        props[RECONSUME_TIME] = str(reconsume_time)
        props[MAX_RECONSUME_TIMES] = str(self._max_reconsume())
        props[DELAY] = str(3 + msg.reconsume_times)
        copy = Message(self.retry_topic, msg.body, msg.flag, props)
        await self.instance.inner_producer().send(copy)

    # --- orderly ------------------------------------------------------------------------------

    def _kick_orderly(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        if pq.consuming or pq.dropped:
            return
        pq.consuming = True
        d = Deferred.fromCoroutine(self._consume_orderly(mq, pq))
        d.addErrback(log_failure(f"orderly consume of {mq.java_str()}"))

    def _lock_valid(self, pq: ProcessQueue) -> bool:
        if self.message_model is MessageModel.BROADCASTING:
            return True
        return pq.locked and self.clock.seconds() - pq.last_lock_time < LOCK_MAX_LIVE

    async def _consume_orderly(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        try:
            while self.running and not pq.dropped and pq.msgs:
                if not self._lock_valid(pq):
                    self._later(1.0, lambda: self._kick_orderly(mq, pq))
                    return
                batch = list(pq.msgs.values())[: self.consume_batch_size]
                self._restore_retry_topic(batch)
                status = await self._invoke_listener(batch)
                if pq.dropped:
                    return
                if status is ConsumeResult.CONSUME_SUCCESS:
                    self._consumed(mq, pq, batch)
                    continue
                if not await self._orderly_failed(mq, pq, batch):
                    self._later(self.suspend_current_queue_time, lambda: self._kick_orderly(mq, pq))
                    return
        finally:
            pq.consuming = False

    async def _orderly_failed(
        self, mq: MessageQueue, pq: ProcessQueue, batch: list[MessageExt]
    ) -> bool:
        """A failed orderly batch (Java ``ConsumeMessageOrderlyService.checkReconsumeTimes``).

        A message that has been retried ``max_reconsume_times`` times already is re-sent to
        ``%RETRY%<group>`` with ``RECONSUME_TIME`` = its count, which the broker files into
        ``%DLQ%<group>``; it then counts as consumed. Every other message (and one whose re-send
        failed) gets ``reconsume_times + 1`` for a local retry. True when nothing is left to
        retry (the queue moves on), False when the caller must suspend and retry.
        """
        limit = self._max_reconsume()
        sent: list[MessageExt] = []
        retry = False
        for m in batch:
            if m.reconsume_times >= limit:
                try:
                    await self._resend_to_retry(m, m.reconsume_times)
                except RMQError as e:
                    self.log.warn(
                        "Orderly message {id} exceeded {n} retries; its re-send failed: {e}",
                        id=m.msg_id,
                        n=limit,
                        e=e,
                    )
                else:
                    self.log.warn(
                        "Orderly message {id} of {mq} failed {n} retries; sent to the DLQ",
                        id=m.msg_id,
                        mq=mq.java_str(),
                        n=m.reconsume_times,
                    )
                    sent.append(m)
                    continue
            retry = True
            m.reconsume_times += 1
        if sent and not pq.dropped:
            self._consumed(mq, pq, sent)
        return not retry

    def _may_pull(self, mq: MessageQueue, pq: ProcessQueue) -> bool:
        return not self.orderly or self._lock_valid(pq)

    async def _before_assign(self, mqs: list[MessageQueue]) -> list[MessageQueue]:
        if not self.orderly or self.message_model is MessageModel.BROADCASTING:
            return mqs
        locked = await self._lock(mqs)
        self._locked_new = set(locked)
        return [mq for mq in mqs if mq in locked]

    def _by_master(self, mqs: Sequence[MessageQueue]) -> list[tuple[str, str, list[MessageQueue]]]:
        """``(broker name, master address, its queues)`` in broker-name order; queues of a
        broker without a known master are left out (LOCK/UNLOCK_BATCH_MQ go to masters)."""
        by_broker: dict[str, list[MessageQueue]] = {}
        for mq in mqs:
            by_broker.setdefault(mq.broker_name, []).append(mq)
        out = []
        for name, group_mqs in sorted(by_broker.items()):
            addr = self.instance.master_addr(name)
            if addr is not None:
                out.append((name, addr, group_mqs))
        return out

    async def _lock(self, mqs: Sequence[MessageQueue]) -> set[MessageQueue]:
        inst = self.instance
        locked: set[MessageQueue] = set()
        for name, addr, group_mqs in self._by_master(mqs):
            try:
                locked |= await inst.api.lock_batch(addr, self.group, inst.client_id, group_mqs)
            except RMQError as e:
                self.log.warn("Locking queues on {b} failed: {e}", b=name, e=e)
        return locked

    async def _before_release(self, mqs: list[MessageQueue], shutdown: bool) -> None:
        if not self.orderly or self.message_model is MessageModel.BROADCASTING or not mqs:
            return
        inst = self.instance
        for name, addr, group_mqs in self._by_master(mqs):
            try:
                await inst.api.unlock_batch(
                    addr, self.group, inst.client_id, group_mqs, oneway=not shutdown
                )
            except RMQError as e:
                self.log.warn("Unlocking queues on {b} failed: {e}", b=name, e=e)

    def _schedule_lock_renewal(self) -> None:
        def renew() -> Deferred[None]:
            return Deferred.fromCoroutine(self._renew_locks())

        def again(_: object) -> None:
            if self.running:
                self._later(LOCK_RENEW_INTERVAL, loop)

        def loop() -> None:
            renew().addBoth(again)

        self._later(LOCK_RENEW_INTERVAL, loop)

    async def _renew_locks(self) -> None:
        mqs = self.assigned_queues()
        if not mqs:
            return
        locked = await self._lock(mqs)
        now = self.clock.seconds()
        for mq in mqs:
            pq = self.process_queues.get(mq)
            if pq is None:
                continue
            if mq in locked:
                pq.locked = True
                pq.last_lock_time = now
                if pq.msgs:
                    self._kick_orderly(mq, pq)
            else:
                pq.locked = False

    def consume_directly(
        self, msg: MessageExt, broker_name: str | None
    ) -> Deferred[dict[str, Any]]:
        """CONSUME_MESSAGE_DIRECTLY: run the listener on ``msg`` and report the outcome."""
        start = self.clock.seconds()

        def report(r: ConsumeResult) -> dict[str, Any]:
            return {
                "autoCommit": True,
                "consumeResult": "CR_SUCCESS" if r is ConsumeResult.CONSUME_SUCCESS else "CR_LATER",
                "order": self.orderly,
                "spentTimeMills": int((self.clock.seconds() - start) * 1000),
            }

        return self._invoke_listener([msg]).addCallback(report)


__all__ = ["Listener", "PushConsumer"]
