"""A broker on a task.Clock for the delivery-guarantee tests (delay, retry, transactions, locks).

:class:`GuaranteeBroker` builds a real :class:`rmq.broker.service.Broker` (``build_broker``) on a
memory or file store, loads its config tables and starts its components the way
``BrokerService`` does, and sends requests through the broker's dispatcher.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rmq.broker.config import BrokerConfig
from rmq.broker.guarantees import Guarantees
from rmq.broker.service import Broker, build_broker
from rmq.common.message import MessageExt, decode_messages, properties_to_string
from rmq.remoting.codes import RequestCode
from rmq.remoting.command import RemotingCommand, new_request
from rmq.store.config import MessageStoreConfig
from rmq.store.filestore import FileMessageStore
from rmq.store.interfaces import IMessageStore
from rmq.store.memory import MemoryMessageStore
from tests.broker.support import FakeConnection, FakeNameServerClient
from tests.store.test_filestore import run_now

START_S = 1_800_000_000.0


class GuaranteeBroker:
    """One broker incarnation over ``root`` (config files) and a store."""

    def __init__(
        self,
        case: SynchronousTestCase,
        clock: Clock,
        root: str,
        *,
        file_store: bool = False,
        store_config: MessageStoreConfig | None = None,
        start: bool = True,
        listen_port: int = 10911,
    ) -> None:
        self.case = case
        self.clock = clock
        self.root = root
        self.store_config = store_config or MessageStoreConfig(
            store_path_root_dir=root, mapped_file_size_commit_log=1024 * 1024
        )
        self.store: IMessageStore
        if file_store:
            self.store = FileMessageStore(self.store_config, clock, run_blocking=run_now)
        else:
            self.store = MemoryMessageStore(clock, self.store_config)
        config = BrokerConfig(
            listen_port=listen_port, broker_ip1="127.0.0.1", store_path_root_dir=root
        )
        self.broker: Broker = build_broker(
            config, clock, self.store, FakeNameServerClient(), store_config=self.store_config
        )
        self.conn = FakeConnection("127.0.0.1:50000")
        self.running = False
        if start:
            self.start()

    @property
    def g(self) -> Guarantees:
        """The guarantee services."""
        guarantees: Guarantees = self.broker.guarantees
        return guarantees

    def start(self) -> None:
        """Load config/*.json, start the store, then the components (BrokerService order)."""
        b = self.broker
        for table in (b.topics, b.groups, b.offsets, *b.tables):
            b.persister.load(table)
        self.case.successResultOf(self.store.start())
        self.store.add_arrival_listener(b.hold.on_arrival)
        for component in b.components:
            self.case.successResultOf(component.start())
        self.running = True

    def stop(self) -> None:
        """Stop the components, write every table, stop the store (a clean shutdown)."""
        if not self.running:
            return
        self.running = False
        b = self.broker
        for component in reversed(b.components):
            self.case.successResultOf(component.stop())
        for table in (b.offsets, b.topics, b.groups, *b.tables):
            b.persister.request(table)
        self.case.successResultOf(b.persister.when_idle())
        self.store.remove_arrival_listener(b.hold.on_arrival)
        self.case.successResultOf(self.store.stop())

    def request(self, command: RemotingCommand, conn: Any = None) -> Any:
        """Dispatch ``command``; the response (None for oneway requests)."""
        return self.case.successResultOf(
            self.broker.dispatcher.dispatch(conn or self.conn, command)
        )

    def send(
        self,
        topic: str,
        body: bytes = b"body",
        props: dict[str, str] | None = None,
        *,
        queue_id: int = 0,
        sys_flag: int = 0,
        group: str = "PG",
        reconsume_times: int = 0,
        max_reconsume_times: int | None = None,
        conn: Any = None,
    ) -> RemotingCommand:
        """SEND_MESSAGE (code 10, long header names); the response."""
        fields: dict[str, object] = {
            "producerGroup": group,
            "topic": topic,
            "defaultTopic": "TBW102",
            "defaultTopicQueueNums": 4,
            "queueId": queue_id,
            "sysFlag": sys_flag,
            "bornTimestamp": int(self.clock.seconds() * 1000),
            "flag": 0,
            "properties": properties_to_string(props or {}),
            "reconsumeTimes": reconsume_times,
            "maxReconsumeTimes": max_reconsume_times,
        }
        response: RemotingCommand | None = self.request(
            new_request(RequestCode.SEND_MESSAGE, fields, body), conn
        )
        assert response is not None
        return response

    def messages(self, topic: str, queue_id: int = 0) -> list[MessageExt]:
        """Every message of one queue, decoded."""
        out: list[MessageExt] = []
        offset = self.store.get_min_offset_in_queue(topic, queue_id)
        while offset < self.store.get_max_offset_in_queue(topic, queue_id):
            got = self.case.successResultOf(self.store.get_messages(topic, queue_id, offset, 32))
            if not got.messages:
                break
            out.extend(decode_messages(got.body()))
            offset = got.next_begin_offset
        return out

    def all_messages(self, topic: str) -> list[MessageExt]:
        """Every message of every queue of ``topic``."""
        out: list[MessageExt] = []
        for qid in self.store.topic_queues().get(topic, []):
            out.extend(self.messages(topic, qid))
        return out


def new_clock() -> Clock:
    """A Clock at a fixed, realistic epoch time."""
    clock = Clock()
    clock.advance(START_S)
    return clock


def make_root(case: SynchronousTestCase) -> str:
    """A fresh directory for config files and the file store."""
    root = str(case.mktemp())
    os.makedirs(root)
    return root
