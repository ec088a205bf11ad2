"""Master/slave replication on loopback: a NameServer, a SYNC_MASTER and a SLAVE broker.

The slave learns its master from the REGISTER_BROKER answer, follows it over the HA port, copies
topics/offsets/groups over remoting, and serves pulls.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from rmq.broker.config import configs_from_properties
from rmq.broker.service import BrokerService, build_broker_service
from rmq.common.message import decode_messages
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.service import build_namesrv_service
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from rmq.store.filestore import FileMessageStore
from rmq.store.interfaces import IMessageStore
from rmq.store.memory import MemoryMessageStore
from rmq.testing import TEST_STORE_PROPERTIES

LOOPBACK = "127.0.0.1"


def _send(topic: str, body: bytes, queue_id: int = 0) -> RemotingCommand:
    return new_request(
        RequestCode.SEND_MESSAGE_V2,
        {"a": "PG", "b": topic, "c": "TBW102", "d": 4, "e": queue_id, "f": 0, "g": 1, "h": 0},
        body,
    )


def _pull(topic: str, offset: int, queue_id: int = 0) -> RemotingCommand:
    return new_request(
        RequestCode.PULL_MESSAGE,
        {
            "consumerGroup": "CG",
            "topic": topic,
            "queueId": queue_id,
            "queueOffset": offset,
            "maxMsgNums": 32,
            "sysFlag": 4,
            "commitOffset": 0,
            "suspendTimeoutMillis": 0,
            "subscription": "*",
            "subVersion": 0,
        },
    )


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds (fails after ``timeout`` seconds)."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


class ReplicationTests(TestCase):
    async def _namesrv(self) -> str:
        root = self.mktemp()
        config = NamesrvConfig(
            rocketmq_home=root,
            kv_config_path=os.path.join(root, "kvConfig.json"),
            listen_port=0,
            bind_address=LOOPBACK,
        )
        service = build_namesrv_service(
            config, TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK), reactor
        )
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.when_listening()
        return f"{LOOPBACK}:{getattr(port.getHost(), 'port', 0)}"

    async def _broker(
        self,
        namesrv: str,
        role: str,
        store: IMessageStore | None = None,
        file_store: bool = False,
        **props: str,
    ) -> BrokerService:
        properties = {
            "brokerIP1": LOOPBACK,
            "listenPort": "0",
            "listenInterface": LOOPBACK,
            "storePathRootDir": os.path.abspath(self.mktemp()),
            "namesrvAddr": namesrv,
            "brokerRole": role,
            "brokerId": "1" if role == "SLAVE" else "0",
            **TEST_STORE_PROPERTIES,
            **props,
        }
        config, store_config = configs_from_properties(properties, "test")
        if store is None and file_store:
            store = FileMessageStore(store_config, reactor, reactor=reactor)
        if store is None:
            store = MemoryMessageStore(reactor, store_config)
        service = build_broker_service(
            config,
            TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK),
            reactor,
            store=store,
            store_config=store_config,
            client_endpoint_factory=tcp_endpoint_factory(reactor),
            ha_endpoint=TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK),
        )
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        await service.when_started()
        return service

    def _client(self) -> RemotingClient:
        client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
        self.addCleanup(client.close)
        return client

    async def _pair(self, slave_store: Any = None) -> tuple[BrokerService, BrokerService]:
        namesrv = await self._namesrv()
        master = await self._broker(namesrv, "SYNC_MASTER")
        slave = await self._broker(namesrv, "SLAVE", slave_store)
        await _until(lambda: bool(master.broker.ha.connections))
        return master, slave

    async def test_sync_master_answers_after_slave_has_the_message(self) -> None:
        """SEND_OK comes only once the slave holds the bytes; the slave serves the message."""
        master, slave = await self._pair()
        client = self._client()
        addr = master.broker.identity.broker_addr
        sent = await client.invoke(addr, _send("HaTopic", b"replicated"), 5)
        self.assertEqual(sent.code, ResponseCode.SUCCESS, sent.remark)
        # At answer time the slave has appended (and acknowledged) every byte of the record.
        self.assertEqual(
            slave.broker.store.get_max_phy_offset(), master.broker.store.get_max_phy_offset()
        )
        for i in range(20):
            sent = await client.invoke(addr, _send("HaTopic", b"m%d" % i, i % 4), 5)
            self.assertEqual(sent.code, ResponseCode.SUCCESS)
        await slave.broker.ha.slave_sync.sync_all()
        self.assertIsNotNone(slave.broker.topics.select("HaTopic"))
        pulled = await client.invoke(slave.broker.identity.broker_addr, _pull("HaTopic", 0), 5)
        self.assertEqual(pulled.code, ResponseCode.SUCCESS, pulled.remark)
        bodies = [m.body for m in decode_messages(pulled.body)]
        self.assertEqual(bodies[:2], [b"replicated", b"m0"])
        # Every consume queue of the master exists on the slave with the same records.
        queues = master.broker.store.topic_queues()
        self.assertEqual(slave.broker.store.topic_queues(), queues)
        for topic, qids in queues.items():
            for qid in qids:
                want = await master.broker.store.get_messages(topic, qid, 0, 1000)
                got = await slave.broker.store.get_messages(topic, qid, 0, 1000)
                self.assertEqual(got.messages, want.messages)
                self.assertEqual(got.tags_codes, want.tags_codes)

    async def test_no_slave_is_slave_not_available(self) -> None:
        """A SYNC_MASTER without a slave stores the message and answers SLAVE_NOT_AVAILABLE."""
        namesrv = await self._namesrv()
        master = await self._broker(namesrv, "SYNC_MASTER")
        client = self._client()
        sent = await client.invoke(master.broker.identity.broker_addr, _send("T", b"x"), 5)
        self.assertEqual(sent.code, ResponseCode.SLAVE_NOT_AVAILABLE)
        self.assertEqual(sent.ext_fields["queueOffset"], "0")

    async def test_slave_refuses_writes(self) -> None:
        """A slave answers a send with NO_PERMISSION (14)."""
        master, slave = await self._pair()
        client = self._client()
        sent = await client.invoke(slave.broker.identity.broker_addr, _send("T", b"x"), 5)
        self.assertEqual(sent.code, ResponseCode.NO_PERMISSION)

    async def test_slave_restart_resumes_from_its_max_offset(self) -> None:
        """A restarted slave asks for its own max offset and receives only what it lacks."""
        slave_store = MemoryMessageStore(reactor)
        master, slave = await self._pair(slave_store)
        client = self._client()
        addr = master.broker.identity.broker_addr
        for i in range(5):
            sent = await client.invoke(addr, _send("R", b"a%d" % i), 5)
            self.assertEqual(sent.code, ResponseCode.SUCCESS)
        before = slave_store.get_max_phy_offset()
        await slave.stopService()
        await _until(lambda: not master.broker.ha.connections)
        sent = await client.invoke(addr, _send("R", b"while-down"), 5)
        self.assertEqual(sent.code, ResponseCode.SLAVE_NOT_AVAILABLE)
        namesrv = master.broker.config.namesrv_addr
        await self._broker(namesrv, "SLAVE", slave_store)
        await _until(lambda: bool(master.broker.ha.connections))
        (conn,) = master.broker.ha.connections
        self.assertEqual(conn.slave_request_offset, before)
        sent = await client.invoke(addr, _send("R", b"after"), 5)
        self.assertEqual(sent.code, ResponseCode.SUCCESS)
        got = await slave_store.get_messages("R", 0, 0, 100)
        self.assertEqual(
            [m.body for m in decode_messages(got.body())],
            [b"a0", b"a1", b"a2", b"a3", b"a4", b"while-down", b"after"],
        )

    async def test_file_stores_replicate_across_slave_restart(self) -> None:
        """File-store brokers: SYNC sends replicate; a restarted slave reopens its files and
        resumes at its recovered max offset."""
        namesrv = await self._namesrv()
        master = await self._broker(namesrv, "SYNC_MASTER", file_store=True)
        slave_root = os.path.abspath(self.mktemp())
        slave = await self._broker(namesrv, "SLAVE", file_store=True, storePathRootDir=slave_root)
        await _until(lambda: bool(master.broker.ha.connections))
        client = self._client()
        addr = master.broker.identity.broker_addr
        for i in range(10):
            sent = await client.invoke(addr, _send("F", b"f%d" % i, i % 2), 5)
            self.assertEqual(sent.code, ResponseCode.SUCCESS, sent.remark)
        before = slave.broker.store.get_max_phy_offset()
        self.assertEqual(before, master.broker.store.get_max_phy_offset())
        await slave.stopService()
        await _until(lambda: not master.broker.ha.connections)
        slave = await self._broker(namesrv, "SLAVE", file_store=True, storePathRootDir=slave_root)
        self.assertEqual(slave.broker.store.get_max_phy_offset(), before)
        await _until(lambda: bool(master.broker.ha.connections))
        self.assertEqual(master.broker.ha.connections[0].slave_request_offset, before)
        sent = await client.invoke(addr, _send("F", b"after", 0), 5)
        self.assertEqual(sent.code, ResponseCode.SUCCESS)
        got = await slave.broker.store.get_messages("F", 0, 0, 100)
        self.assertEqual(
            [m.body for m in decode_messages(got.body())],
            [b"f0", b"f2", b"f4", b"f6", b"f8", b"after"],
        )
