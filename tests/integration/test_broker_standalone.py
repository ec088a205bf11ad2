"""The standalone service (NameServer + broker, file store) and restarts on the same data."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from rmq.broker.service import BrokerService
from rmq.common.message import decode_messages
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request
from rmq.standalone import Options, build_standalone_service
from rmq.testing import start_local_cluster


def _send(topic: str, body: bytes) -> RemotingCommand:
    return new_request(
        RequestCode.SEND_MESSAGE_V2,
        {
            "a": "PG",
            "b": topic,
            "c": "TBW102",
            "d": 4,
            "e": 0,
            "f": 0,
            "g": 1,
            "h": 0,
            "i": "KEYS\x01k",
        },
        body,
    )


def _pull(topic: str) -> RemotingCommand:
    return new_request(
        RequestCode.PULL_MESSAGE,
        {
            "consumerGroup": "CG",
            "topic": topic,
            "queueId": 0,
            "queueOffset": 0,
            "maxMsgNums": 32,
            "sysFlag": 4,
            "commitOffset": 0,
            "suspendTimeoutMillis": 0,
            "subscription": "*",
            "subVersion": 0,
        },
    )


class StandaloneTests(TestCase):
    async def test_standalone_serves_and_stops(self) -> None:
        """rmq-standalone on ephemeral ports registers its broker and stores on disk."""
        # Small commit-log files: the 1 GiB default would be preallocated in the test's temp dir.
        conf = FilePath(self.mktemp())
        conf.setContent(b"mappedFileSizeCommitLog=16777216\n")
        options = Options()
        options.parseOptions(
            ["--data", self.mktemp(), "--namesrv-port", "0", "--broker-port", "0"]
            + ["-c", conf.path]
        )
        top = build_standalone_service(reactor, options)
        top.startService()
        stopped: list[Deferred[None]] = []
        self.addCleanup(lambda: stopped[0] if stopped else top.stopService())
        broker = [s for s in top if isinstance(s, BrokerService)][0]
        await broker.when_started()
        client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
        self.addCleanup(client.close)
        addr = broker.broker.identity.broker_addr
        self.assertEqual((await client.invoke(addr, _send("SaT", b"disk"), 5)).code, 0)
        namesrv = broker.broker.registration._addrs()[0]
        resp = await client.invoke(namesrv, new_request(RequestCode.GET_BROKER_CLUSTER_INFO), 5)
        self.assertIn(addr.encode(), resp.body)
        stopped.append(top.stopService())
        await stopped[0]
        self.assertEqual(broker.broker.registration.registered, {})


class FileStoreRestartTests(TestCase):
    async def test_messages_and_offsets_survive_restart(self) -> None:
        """With the file store, messages, topics and offsets are there after a clean restart."""
        data = self.mktemp()
        client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
        self.addCleanup(client.close)
        first = await start_local_cluster(reactor, data_dir=data, file_store=True)
        try:
            sent = await client.invoke(first.broker_addr, _send("Durable", b"kept"), 5)
            self.assertEqual(sent.code, ResponseCode.SUCCESS)
            first.broker.offsets.commit_offset("CG", "Durable", 0, 1)
        finally:
            await first.stop()
        second = await start_local_cluster(reactor, data_dir=data, file_store=True)
        self.addCleanup(second.stop)
        self.assertIn("Durable", second.broker.topics)
        self.assertEqual(second.broker.offsets.query_offset("CG", "Durable", 0), 1)
        pulled = await client.invoke(second.broker_addr, _pull("Durable"), 5)
        self.assertEqual(pulled.code, ResponseCode.SUCCESS)
        self.assertEqual([m.body for m in decode_messages(pulled.body)], [b"kept"])
