"""rmq.client: Deferred-based RocketMQ producer and consumers.

Works against rmq and against Apache RocketMQ 4.x/5.x brokers (remoting protocol). Every public
method returns a Deferred; see docs/client.md.
"""

from __future__ import annotations

from rmq.client.allocate import (
    AllocateMessageQueueAveragely,
    AllocateMessageQueueAveragelyByCircle,
    AllocateMessageQueueByConfig,
    AllocateMessageQueueConsistentHash,
)
from rmq.client.api import MessageSelector, PullResult, PullStatus, SendResult, SendStatus
from rmq.client.consumer import (
    CONSUME_SUCCESS,
    RECONSUME_LATER,
    ConsumeFromWhere,
    ConsumeResult,
    MessageModel,
)
from rmq.client.interfaces import (
    IAllocateStrategy,
    IMessageQueueSelector,
    IOffsetStore,
    ITransactionListener,
)
from rmq.client.message_queue import MessageQueue
from rmq.client.producer import Producer, new_message
from rmq.client.pull_consumer import PullConsumer
from rmq.client.push_consumer import PushConsumer
from rmq.client.reply import RequestTimeoutError, create_reply_message
from rmq.client.selector import (
    SelectMessageQueueByHash,
    SelectMessageQueueByRandom,
    SelectMessageQueueByRoundRobin,
)
from rmq.client.transaction import (
    LocalTransactionState,
    TransactionProducer,
    TransactionSendResult,
)
from rmq.common.message import Message, MessageExt

__all__ = [
    "AllocateMessageQueueAveragely",
    "AllocateMessageQueueAveragelyByCircle",
    "AllocateMessageQueueByConfig",
    "AllocateMessageQueueConsistentHash",
    "CONSUME_SUCCESS",
    "ConsumeFromWhere",
    "ConsumeResult",
    "IAllocateStrategy",
    "IMessageQueueSelector",
    "IOffsetStore",
    "ITransactionListener",
    "LocalTransactionState",
    "Message",
    "MessageExt",
    "MessageModel",
    "MessageQueue",
    "MessageSelector",
    "Producer",
    "PullConsumer",
    "PullResult",
    "PullStatus",
    "PushConsumer",
    "RECONSUME_LATER",
    "RequestTimeoutError",
    "SelectMessageQueueByHash",
    "SelectMessageQueueByRandom",
    "SelectMessageQueueByRoundRobin",
    "SendResult",
    "SendStatus",
    "TransactionProducer",
    "TransactionSendResult",
    "create_reply_message",
    "new_message",
]
