"""Stored records the broker reads back, and the new messages it makes from them.

:func:`read_batch` walks a consume queue in batches, skipping holes (the broker's own system
queues: timer messages, half and op messages). :func:`copy_record` makes the retry copies,
deliveries, commits and check copies.

Java counterparts: the ``MessageExtBrokerInner`` copies built by
``SendMessageProcessor.asyncConsumerSendMsgBack``, ``ScheduleMessageService.messageTimeup``,
``EndTransactionProcessor.endMessageTransaction`` and
``TransactionalMessageBridge.renewHalfMessageInner``. Each keeps the stored record's body, flag,
born timestamp and host, and store host; only topic, queue, properties (and in some cases the
sysFlag, reconsume times and prepared-transaction offset) change.
"""

from __future__ import annotations

from collections.abc import Mapping

from rmq.common.message import (
    TAGS,
    WAIT,
    BrokerMessage,
    MessageExt,
    properties_to_string,
    tags_hash,
)
from rmq.store.interfaces import GetMessageResult, GetMessageStatus, IMessageStore

#: Records read per ``get_messages`` call.
BATCH = 32


async def read_batch(
    store: IMessageStore, topic: str, queue_id: int, offset: int, high: int
) -> tuple[GetMessageResult | None, int]:
    """The next batch of records at or after queue ``offset`` and below ``high``.

    Returns ``(result, offset)``: a FOUND result with messages and the offset it starts at
    (past any hole the store skipped), or ``(None, offset)`` when nothing is left below ``high``
    (the offset then is as far as the holes led).
    """
    while offset < high:
        result = await store.get_messages(topic, queue_id, offset, BATCH)
        if result.status is GetMessageStatus.FOUND and result.messages:
            return result, offset
        if result.next_begin_offset <= offset:
            break
        offset = result.next_begin_offset
    return None, offset


def stored_properties(props: Mapping[str, str]) -> str:
    """The property string written to the commit log: ``props`` without ``WAIT``.

    ``WAIT`` only tells the store whether to hold the put for a flush; rmq never stores it.
    """
    return properties_to_string({k: v for k, v in props.items() if k != WAIT})


def copy_record(
    ext: MessageExt,
    topic: str,
    queue_id: int,
    properties: dict[str, str],
    *,
    sys_flag: int | None = None,
    reconsume_times: int | None = None,
    prepared_transaction_offset: int = 0,
) -> BrokerMessage:
    """A message to put for the stored record ``ext`` on ``topic``/``queue_id``.

    ``ext`` should be decoded with ``decompress=False`` so the body is stored as it came (its
    sysFlag still says whether it is compressed). The tags code is computed from ``TAGS`` in
    ``properties`` and the stored property string is :func:`stored_properties`; sysFlag and
    reconsume times are ``ext``'s unless given.
    """
    return BrokerMessage(
        topic=topic,
        queue_id=queue_id,
        body=ext.body,
        flag=ext.flag,
        properties=properties,
        properties_str=stored_properties(properties),
        tags_code=tags_hash(properties.get(TAGS)),
        born_timestamp=ext.born_timestamp,
        born_host=ext.born_host,
        store_host=ext.store_host,
        sys_flag=ext.sys_flag if sys_flag is None else sys_flag,
        reconsume_times=ext.reconsume_times if reconsume_times is None else reconsume_times,
        prepared_transaction_offset=prepared_transaction_offset,
    )
