"""The transactional producer (Java ``TransactionMQProducer`` + ``DefaultMQProducerImpl``).

A transaction is a half message, a local transaction and a verdict:

1. :meth:`TransactionProducer.send_message_in_transaction` sends the message with the
   properties ``TRAN_MSG=true`` and ``PGROUP=<group>`` and sysFlag ``TRANSACTION_PREPARED``; the
   broker parks it in ``RMQ_SYS_TRANS_HALF_TOPIC`` where no consumer sees it.
2. The listener's ``execute_local_transaction(msg, arg)`` runs; its answer (a
   :class:`LocalTransactionState`, or a Deferred firing with one) is sent to the broker that stored
   the half message as END_TRANSACTION (oneway, protocol §5.7): commit (8) makes the broker store
   the message in its real topic, rollback (12) drops it, unknown (0) leaves it waiting.
3. For a half message still undecided after a while the broker sends CHECK_TRANSACTION_STATE
   (§6.1) to a live producer of the group; the listener's ``check_local_transaction(msg)`` answers
   and the producer replies with END_TRANSACTION ``fromTransactionCheck=true``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rmq.client.api import SendResult, SendStatus
from rmq.client.interfaces import ITransactionListener
from rmq.client.producer import Producer, check_message
from rmq.common.asyncutil import deferred_api, log_failure
from rmq.common.errors import MQClientError, RMQError
from rmq.common.message import (
    DELAY,
    PGROUP,
    TRAN_MSG,
    UNIQ_KEY,
    Message,
    MessageExt,
    MessageSysFlag,
    decode_offset_msg_id,
)

__all__ = [
    "LocalTransactionState",
    "TransactionProducer",
    "TransactionSendResult",
    "end_transaction_code",
]


class LocalTransactionState(enum.Enum):
    """The outcome of a local transaction (Java ``LocalTransactionState``, Java's spelling).

    ``UNKNOWN`` is an alias of ``UNKNOW``.
    """

    COMMIT_MESSAGE = "COMMIT_MESSAGE"
    ROLLBACK_MESSAGE = "ROLLBACK_MESSAGE"
    UNKNOW = "UNKNOW"
    UNKNOWN = "UNKNOW"


_END_CODES = {
    LocalTransactionState.COMMIT_MESSAGE: MessageSysFlag.TRANSACTION_COMMIT_TYPE,
    LocalTransactionState.ROLLBACK_MESSAGE: MessageSysFlag.TRANSACTION_ROLLBACK_TYPE,
    LocalTransactionState.UNKNOW: MessageSysFlag.TRANSACTION_NOT_TYPE,
}


def end_transaction_code(state: LocalTransactionState) -> int:
    """END_TRANSACTION ``commitOrRollback``: 8 commit, 12 rollback, 0 unknown."""
    return _END_CODES[state]


@attrs.frozen
class TransactionSendResult(SendResult):
    """A :class:`SendResult` of the half message plus the local transaction's outcome.

    ``transaction_id`` is the message's ``UNIQ_KEY`` (as in Java).
    """

    local_transaction_state: LocalTransactionState = LocalTransactionState.UNKNOW


class TransactionProducer(Producer):
    """A :class:`Producer` that also sends transactional messages (Java ``TransactionMQProducer``).

    Args:
        group: producer group; the broker sends its check-backs to a live member of this group,
            so every process that can answer for these transactions should use the same group.
        listener: an :class:`ITransactionListener`.
        namesrv_addr, clock, **kwargs: as for :class:`Producer`.

    Plain :meth:`send` works as on a :class:`Producer`.
    """

    _log = Logger()

    def __init__(
        self,
        group: str,
        listener: ITransactionListener,
        namesrv_addr: str | None = None,
        clock: IReactorTime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(group, namesrv_addr, clock, **kwargs)
        self.listener = ITransactionListener(listener)
        self._checks: set[Deferred[None]] = set()

    # --- sending ------------------------------------------------------------------------------

    def _prepare(self, msg: Message) -> tuple[bytes, int]:
        """Mark half messages with the PREPARED sysFlag, as Java's ``sendKernelImpl`` does."""
        body, sys_flag = super()._prepare(msg)
        if msg.properties.get(TRAN_MSG) == "true":
            sys_flag |= MessageSysFlag.TRANSACTION_PREPARED_TYPE
        return body, sys_flag

    @deferred_api
    async def send_message_in_transaction(
        self, msg: Message, arg: Any = None
    ) -> TransactionSendResult:
        """Send ``msg`` as a half message, run the local transaction, tell the broker the outcome.

        Fires with a :class:`TransactionSendResult` once the outcome was written to the broker
        (END_TRANSACTION is oneway: the broker's answer is never awaited). A ``DELAY`` property is
        removed (transactional messages cannot be delayed). A store status other than
        ``SEND_OK`` rolls the transaction back without calling the listener. An exception (or a
        failed Deferred) from ``execute_local_transaction`` counts as ``UNKNOW``.

        Fails like :meth:`Producer.send` when the half message is not stored (MQClientError,
        MQBrokerError, RemotingError); the listener is not called then.
        """
        if not isinstance(msg, Message):
            raise MQClientError("a transactional message must be one Message (no batches)")
        check_message(msg, self.max_message_size)
        msg.properties.pop(DELAY, None)
        msg.properties[TRAN_MSG] = "true"
        msg.properties[PGROUP] = self.group
        result = await self.send(msg)
        transaction_id = msg.properties.get(UNIQ_KEY) or result.msg_id
        error: Exception | None = None
        if result.status is SendStatus.SEND_OK:
            state, error = await self._ask_listener(
                "execute_local_transaction",
                transaction_id,
                self.listener.execute_local_transaction,
                msg,
                arg,
            )
        else:
            state = LocalTransactionState.ROLLBACK_MESSAGE
        if state is not LocalTransactionState.COMMIT_MESSAGE:
            self._log.info(
                "Transaction {id} of {group}: local state {state}",
                id=transaction_id,
                group=self.group,
                state=state.name,
            )
        remark = None
        if error is not None:
            remark = f"executeLocalTransactionBranch exception: {_describe(error)}"
        try:
            await self._end_transaction(result, state, remark)
        except (RMQError, ValueError) as e:
            # The broker asks again with CHECK_TRANSACTION_STATE; Java also only logs this.
            self._log.warn(
                "END_TRANSACTION {state} for {id} not sent: {e}",
                state=state.name,
                id=transaction_id,
                e=e,
            )
        return TransactionSendResult(
            status=result.status,
            msg_id=result.msg_id,
            offset_msg_id=result.offset_msg_id,
            message_queue=result.message_queue,
            queue_offset=result.queue_offset,
            transaction_id=transaction_id,
            region_id=result.region_id,
            local_transaction_state=state,
        )

    async def _ask_listener(
        self, what: str, transaction_id: str, method: Callable[..., Any], *args: Any
    ) -> tuple[LocalTransactionState, Exception | None]:
        """Call a listener method (plain, Deferred or coroutine result) for ``transaction_id``.

        Its answer as a state; an exception, a failed Deferred or a bad answer is logged and
        counts as ``UNKNOW``, returned with the error for END_TRANSACTION's remark.
        """
        try:
            return coerce_state(await maybeDeferred(method, *args)), None
        except Exception as e:
            self._log.failure(
                "{what} of {group} failed for {id}; state UNKNOW",
                what=what,
                group=self.group,
                id=transaction_id,
            )
            return LocalTransactionState.UNKNOW, e

    async def _end_transaction(
        self, result: SendResult, state: LocalTransactionState, remark: str | None
    ) -> None:
        """END_TRANSACTION to the master that stored the half message (Java ``endTransaction``)."""
        broker = result.message_queue.broker_name
        commit_log_offset = decode_offset_msg_id(result.offset_msg_id or result.msg_id).offset
        addr = self._addr(result.message_queue)
        header: dict[str, object] = {
            "producerGroup": self.group,
            "bname": broker,
            "commitLogOffset": commit_log_offset,
            "msgId": result.msg_id,
            "tranStateTableOffset": result.queue_offset,
            "commitOrRollback": end_transaction_code(state),
            "fromTransactionCheck": False,
            "transactionId": result.transaction_id,
        }
        await self.instance.api.end_transaction(addr, header, remark)

    # --- check-back ---------------------------------------------------------------------------

    def check_transaction_state(self, addr: str, msg: MessageExt, header: dict[str, str]) -> None:
        """CHECK_TRANSACTION_STATE from the broker at ``addr`` (called by the client instance).

        Runs ``check_local_transaction`` and answers with END_TRANSACTION in the background; the
        check itself gets no response (it is oneway).
        """
        d = Deferred.fromCoroutine(self._check(addr, msg, header))
        self._checks.add(d)
        d.addErrback(log_failure("transaction check-back"))
        d.addBoth(lambda _: self._checks.discard(d))

    async def _check(self, addr: str, msg: MessageExt, header: dict[str, str]) -> None:
        uniq = msg.properties.get(UNIQ_KEY) or header.get("msgId") or msg.msg_id
        try:
            commit_log_offset = int(header["commitLogOffset"])
            queue_offset = int(header["tranStateTableOffset"])
        except (KeyError, ValueError):
            self._log.warn(
                "CHECK_TRANSACTION_STATE for {id} with a bad header {header}; ignored",
                id=uniq,
                header=header,
            )
            return
        state, error = await self._ask_listener(
            "check_local_transaction", uniq, self.listener.check_local_transaction, msg
        )
        end: dict[str, object] = {
            "producerGroup": self.group,
            "commitLogOffset": commit_log_offset,
            "msgId": uniq,
            "tranStateTableOffset": queue_offset,
            "commitOrRollback": end_transaction_code(state),
            "transactionId": header.get("transactionId"),
            "fromTransactionCheck": True,
        }
        remark = None
        if error is not None:
            remark = f"checkLocalTransactionState Exception: {_describe(error)}"
        instance = self._instance
        if instance is None:
            self._log.warn(
                "Check-back answer {state} for {id} dropped: producer {group} shut down",
                state=state.name,
                id=uniq,
                group=self.group,
            )
            return
        # Answer the broker that asked (Java uses the channel's address); the stored message's
        # store host is the same broker when the request came without a usable peer address.
        target = addr if addr and not addr.startswith("?") else msg.store_host
        try:
            await instance.api.end_transaction(target, end, remark)
        except RMQError as e:
            self._log.warn(
                "Check-back answer {state} for {id} to {addr} not sent: {e}",
                state=state.name,
                id=uniq,
                addr=target,
                e=e,
            )

    def pending_checks(self) -> int:
        """Check-backs whose listener call or END_TRANSACTION is still in progress."""
        return len(self._checks)


def coerce_state(value: object) -> LocalTransactionState:
    """A listener's answer as a :class:`LocalTransactionState`.

    Accepts the enum or its name (``"COMMIT_MESSAGE"``, ``"UNKNOWN"``, ...); ``None`` is
    ``UNKNOW`` (as in Java). Anything else raises MQClientError.
    """
    if isinstance(value, LocalTransactionState):
        return value
    if value is None:
        return LocalTransactionState.UNKNOW
    if isinstance(value, str) and value in LocalTransactionState.__members__:
        return LocalTransactionState[value]
    raise MQClientError(f"not a LocalTransactionState: {value!r}")


def _describe(error: BaseException) -> str:
    """Java's ``Throwable.toString()`` shape: ``Type: message``."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
