"""Integration: the NameServer on real loopback sockets, and ``twistd rmq-namesrv`` end to end.

Real TCP on 127.0.0.1 with ephemeral ports, real files in the test's temp dir, the real
RemotingClient; every wait is bounded and every port, connection and child process is cleaned up.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from rmq.common import fastjson
from rmq.common.asyncutil import global_reactor
from rmq.common.route import DataVersion, RegisterBrokerBody, TopicRouteData, body_crc32
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.service import build_namesrv_service
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import new_request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER = "127.0.0.1:10911"


def register_request(compressed: bool) -> Any:
    """A REGISTER_BROKER for broker-a with topics TopicI (4 queues) and TBW102."""
    topics = {
        name: {"topicName": name, "readQueueNums": n, "writeQueueNums": n, "perm": p}
        for name, n, p in (("TopicI", 4, 6), ("TBW102", 8, 7))
    }
    body = RegisterBrokerBody(DataVersion(1, 1), topics).encode(compressed)
    ext = {
        "brokerName": "broker-a",
        "brokerAddr": BROKER,
        "clusterName": "DefaultCluster",
        "haServerAddr": "127.0.0.1:10912",
        "brokerId": 0,
        "compressed": compressed,
        "bodyCrc32": body_crc32(body),
    }
    return new_request(RequestCode.REGISTER_BROKER, ext, body)


class LoopbackTests(TestCase):
    """A started NameServer service answering a RemotingClient over loopback TCP."""

    async def start(self) -> str:
        reactor = global_reactor()
        tmp = self.mktemp()
        self.kv_path = os.path.join(tmp, "namesrv", "kvConfig.json")
        config = NamesrvConfig(kv_config_path=self.kv_path, rocketmq_home=tmp)
        self.namesrv = build_namesrv_service(
            config, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), reactor
        )
        self.namesrv.startService()
        self.addCleanup(self.namesrv.stopService)
        port = await self.namesrv.when_listening()
        self.client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
        self.addCleanup(self.client.close)
        return f"127.0.0.1:{port.getHost().port}"  # type: ignore[attr-defined]

    async def test_register_then_route(self) -> None:
        """A compressed registration over TCP makes the topic's route available to clients."""
        addr = await self.start()
        response = await self.client.invoke(addr, register_request(True), timeout=5)
        self.assertEqual(response.code, ResponseCode.SUCCESS)
        route_response = await self.client.invoke(
            addr, new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "TopicI"}), timeout=5
        )
        self.assertEqual(route_response.code, ResponseCode.SUCCESS)
        route = TopicRouteData.from_json(route_response.body)
        self.assertEqual(route.broker_datas[0].broker_addrs, {0: BROKER})
        self.assertEqual(
            [(q.read_queue_nums, q.write_queue_nums, q.perm) for q in route.queue_datas],
            [(4, 4, 6)],
        )
        missing = await self.client.invoke(
            addr, new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "Nope"}), timeout=5
        )
        self.assertEqual(missing.code, ResponseCode.TOPIC_NOT_EXIST)

    async def test_kv_put_reaches_disk(self) -> None:
        """PUT_KV_CONFIG is answered after kvConfig.json holds the value (thread-pool write)."""
        addr = await self.start()
        put = new_request(
            RequestCode.PUT_KV_CONFIG,
            {"namespace": "ORDER_TOPIC_CONFIG", "key": "T", "value": "a:4"},
        )
        response = await self.client.invoke(addr, put, timeout=5)
        self.assertEqual(response.code, ResponseCode.SUCCESS)
        with open(self.kv_path, "rb") as f:
            self.assertEqual(
                fastjson.loads(f.read()), {"configTable": {"ORDER_TOPIC_CONFIG": {"T": "a:4"}}}
            )

    async def test_broker_connection_close_drops_routes(self) -> None:
        """Closing the connection the broker registered on removes its routes at once."""
        addr = await self.start()
        await self.client.invoke(addr, register_request(False), timeout=5)
        server_side = [c.when_closed() for c in self.namesrv.factory.connections]
        self.assertEqual(len(server_side), 1)
        await self.client.close()
        await DeferredList(server_side)
        # when_closed waiters fire just before the factory's connection-lost callback runs.
        await deferLater(global_reactor(), 0, lambda: None)
        self.assertIsNone(self.namesrv.routes.pickup_topic_route_data("TopicI"))


class _Twistd(ProcessProtocol):
    """Collects a twistd child's output; fires ``listening`` with its port and ``ended`` at exit."""

    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[BaseException] = Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self.output += data
        m = re.search(rb"NameServer listening on [0-9.]+:(\d+)", self.output)
        if m is not None and not self.listening.called:
            self.listening.callback(int(m.group(1)))

    def processEnded(self, reason: Failure) -> None:
        if not self.listening.called:
            self.listening.errback(reason)
        assert reason.value is not None
        self.ended.callback(reason.value)


class TwistdTests(TestCase):
    """``twistd -n rmq-namesrv -c …`` as a real child process."""

    async def test_twistd_serves_and_stops_on_sigterm(self) -> None:
        """twistd runs the NameServer from a config file, answers, and shuts down on SIGTERM."""
        reactor = global_reactor()
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        conf = os.path.join(tmp, "namesrv.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(f"listenPort=0\nbindAddress=127.0.0.1\nkvConfigPath={tmp}/kv.json\n")
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        proto = _Twistd()
        env = dict(os.environ, PYTHONPATH=REPO)
        process = reactor.spawnProcess(
            proto,
            twistd,
            [twistd, "-n", "--pidfile=", "--logfile=-", "rmq-namesrv", "-c", conf],
            env=env,
            path=tmp,
        )

        def kill() -> Deferred[BaseException] | None:
            try:
                process.signalProcess("KILL")
            except ProcessExitedAlready:
                return None
            return proto.ended

        self.addCleanup(kill)
        port = await proto.listening.addTimeout(30, reactor)
        client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
        self.addCleanup(client.close)
        response = await client.invoke(
            f"127.0.0.1:{port}",
            new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"}),
            timeout=10,
        )
        self.assertEqual(response.code, ResponseCode.TOPIC_NOT_EXIST)
        await client.close()
        process.signalProcess("TERM")
        reason = await proto.ended.addTimeout(30, reactor)
        self.assertIn(b"Server Shut Down.", proto.output)
        self.assertNotIn(b"Traceback", proto.output)
        # twistd re-raises SIGTERM after a clean shutdown so its exit status names the signal.
        if isinstance(reason, ProcessTerminated):
            self.assertEqual(reason.signal, signal.SIGTERM)
        else:
            self.assertIsInstance(reason, ProcessDone)
