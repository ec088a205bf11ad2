"""Plugs the delivery guarantees (issue 6) into a :class:`rmq.broker.service.Broker`.

Retry/DLQ (CONSUMER_SEND_MSG_BACK), delay levels and timer messages, transactions (half
messages, END_TRANSACTION, check-backs) and orderly-consumption queue locks. ``build_broker``
calls :func:`install_guarantees`; the services it returns start after the store and stop before
the config tables are written (``Broker.components``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from rmq.broker.rebalance_lock import RebalanceLockManager, RebalanceLockProcessor
from rmq.broker.schedule import (
    TIMER_TOPIC,
    DelayHook,
    ScheduleMessageService,
    TimerMessageService,
)
from rmq.broker.sendback import SendMessageBackProcessor
from rmq.broker.transaction import (
    EndTransactionProcessor,
    TransactionalMessageCheckService,
    TransactionConfig,
    TransactionHook,
)
from rmq.remoting.codes import RequestCode
from rmq.store.config import DEFAULT_DELAY_LEVELS, MessageStoreConfig

if TYPE_CHECKING:
    from rmq.broker.service import Broker


@attrs.define(eq=False)
class Guarantees:
    """The guarantee services of one broker (for tests and admin tools)."""

    schedule: ScheduleMessageService
    timers: TimerMessageService
    transactions: TransactionalMessageCheckService
    locks: RebalanceLockManager
    delay_hook: DelayHook
    transaction_hook: TransactionHook


def install_guarantees(
    broker: Broker,
    store_config: MessageStoreConfig | None = None,
    transaction_config: TransactionConfig | None = None,
) -> Guarantees:
    """Register processors, send hooks, persisted tables and services on ``broker``."""
    levels = store_config.message_delay_level if store_config else DEFAULT_DELAY_LEVELS
    if transaction_config is None:
        c = broker.config
        transaction_config = TransactionConfig(
            timeout_ms=c.transaction_timeout_ms,
            check_interval_ms=c.transaction_check_interval_ms,
            check_max=c.transaction_check_max,
        )
    persist = broker.persister.request
    schedule = ScheduleMessageService(broker.clock, broker.store, persist, levels)
    timers = TimerMessageService(broker.clock, broker.store, persist)
    transactions = TransactionalMessageCheckService(
        broker.clock,
        broker.store,
        broker.topics,
        broker.offsets,
        broker.producers,
        broker.identity,
        transaction_config,
    )
    locks = RebalanceLockManager(broker.clock)

    def ensure_timer_topic() -> None:
        broker.topics.create_topic_if_absent(TIMER_TOPIC, 1)

    delay_hook = DelayHook(broker.clock, schedule.max_level, ensure_timer_topic=ensure_timer_topic)
    transaction_hook = TransactionHook(broker.config, broker.identity, broker.topics)
    broker.send_hooks.append(transaction_hook)
    broker.send_hooks.append(delay_hook)
    broker.register_processor(
        [RequestCode.CONSUMER_SEND_MSG_BACK],
        SendMessageBackProcessor(
            broker.config,
            broker.identity,
            broker.topics,
            broker.groups,
            broker.store,
            schedule.max_level,
        ),
    )
    broker.register_processor(
        [RequestCode.END_TRANSACTION],
        EndTransactionProcessor(broker.config, broker.store, transactions),
    )
    broker.register_processor(
        [RequestCode.LOCK_BATCH_MQ, RequestCode.UNLOCK_BATCH_MQ], RebalanceLockProcessor(locks)
    )
    broker.tables.extend([schedule.table, timers.table])
    if broker.config.is_master:
        # A slave only replicates: deliveries and check-backs are the master's job (as in Java).
        broker.components.extend([schedule, timers, transactions])
    return Guarantees(schedule, timers, transactions, locks, delay_hook, transaction_hook)
