"""The real C++ client (rocketmq-client-cpp 1.0.1) routes through rmq's NameServer.

A fake broker (a real rmq remoting server on a loopback port that records what it receives) is
registered with a real rmq NameServer; the C++ producer asks the NameServer for the topic's route,
accepts it, and sends its message to the address it was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase

from rmq.common.asyncutil import global_reactor
from rmq.common.route import RegisterBrokerBody, body_crc32
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.service import build_namesrv_service
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.dispatch import Dispatcher, FunctionProcessor
from rmq.remoting.interfaces import IRemotingConnection
from rmq.remoting.protocol import RemotingServerFactory
from tests.support.cpp import CppHarness

CLUSTER = "InteropCluster"
BROKER_NAME = "broker-interop"


class RecordingBroker:
    """A broker stand-in: records every request; answers heart beats and sends with success.

    ``requests`` lists every request in arrival order; ``wait_for_code`` fires with the first
    request carrying a code. Sends get a minimal SUCCESS answer (msgId, queueId, queueOffset),
    which is what the C++ client reads from a send response.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.requests: list[RemotingCommand] = []
        self._waiters: list[tuple[int, Deferred[RemotingCommand]]] = []
        self.dispatcher = Dispatcher(default=FunctionProcessor(self._process))
        self.factory = RemotingServerFactory(self.dispatcher, clock)
        self._offset = 0

    def _process(self, conn: IRemotingConnection, request: RemotingCommand) -> RemotingCommand:
        self.requests.append(request)
        waiters, self._waiters = self._waiters, []
        for code, d in waiters:
            if code == request.code:
                d.callback(request)
            else:
                self._waiters.append((code, d))
        if request.code in (RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2):
            self._offset += 1
            fields = {
                "msgId": f"7F00000100002A9F{self._offset:016X}",
                "queueId": request.ext_fields.get("queueId", request.ext_fields.get("e", "0")),
                "queueOffset": str(self._offset - 1),
            }
            return new_response(request, ResponseCode.SUCCESS, None, fields)
        return new_response(request, ResponseCode.SUCCESS)

    def wait_for_code(self, code: int, timeout: float) -> Deferred[RemotingCommand]:
        """The first request with ``code`` (already received or future), within ``timeout`` s."""
        for request in self.requests:
            if request.code == code:
                d: Deferred[RemotingCommand] = Deferred()
                d.callback(request)
                return d
        entry: tuple[int, Deferred[RemotingCommand]]

        def cancel(_: Deferred[RemotingCommand]) -> None:
            if entry in self._waiters:
                self._waiters.remove(entry)

        d = Deferred(cancel)
        entry = (code, d)
        self._waiters.append(entry)
        d.addTimeout(timeout, self.clock)
        return d

    async def close_connections(self) -> None:
        """Close every accepted connection and wait until each is gone."""
        waits = []
        for conn in list(self.factory.connections):
            waits.append(conn.when_closed())
            conn.close()
        await DeferredList(waits)


def topic_config(name: str, queues: int, perm: int = 6) -> dict[str, Any]:
    """A TopicConfig in Java's JSON shape."""
    return {
        "topicName": name,
        "readQueueNums": queues,
        "writeQueueNums": queues,
        "perm": perm,
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": 0,
        "order": False,
    }


class CppNameServerTests(TestCase):
    """The C++ producer against a real rmq NameServer and a recording broker."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._set_up())

    async def _set_up(self) -> None:
        self.reactor = global_reactor()
        tmp = Path(self.mktemp())
        tmp.mkdir(parents=True)
        config = NamesrvConfig(kv_config_path=str(tmp / "kvConfig.json"), rocketmq_home=str(tmp))
        endpoint = TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1")
        self.namesrv = build_namesrv_service(config, endpoint, self.reactor)
        self.namesrv.startService()
        self.addCleanup(self.namesrv.stopService)
        port = await self.namesrv.when_listening()
        self.namesrv_addr = f"127.0.0.1:{port.getHost().port}"  # type: ignore[attr-defined]

        self.broker = RecordingBroker(self.reactor)
        broker_port = self.reactor.listenTCP(0, self.broker.factory, interface="127.0.0.1")
        self.addCleanup(self.broker.close_connections)
        self.addCleanup(broker_port.stopListening)
        self.broker_addr = f"127.0.0.1:{broker_port.getHost().port}"

        self.client = RemotingClient(self.reactor, tcp_endpoint_factory(self.reactor))
        self.addCleanup(self.client.close)
        self.harness = CppHarness(self, self.reactor)

    async def register(self, topics: dict[str, dict[str, Any]]) -> None:
        """Register the recording broker, with ``topics``, as master of BROKER_NAME."""
        body = RegisterBrokerBody(topic_config_table=topics).encode()
        header = {
            "brokerName": BROKER_NAME,
            "brokerAddr": self.broker_addr,
            "clusterName": CLUSTER,
            "haServerAddr": "127.0.0.1:1",
            "brokerId": 0,
            "compressed": False,
            "bodyCrc32": body_crc32(body),
        }
        request = new_request(RequestCode.REGISTER_BROKER, header, body)
        response = await self.client.invoke(self.namesrv_addr, request, timeout=5.0)
        self.assertEqual(response.code, ResponseCode.SUCCESS, response.remark)

    def spawn_producer(self, topic: str, body: str) -> Any:
        """A C++ producer sending one message to ``topic`` through our NameServer."""
        return self.harness.spawn(
            "producer",
            {
                "namesrv": self.namesrv_addr,
                "group": "PG_INTEROP_NAMESRV",
                "topic": topic,
                "timeout_ms": 3000,
                "messages": [{"body": body, "keys": "k1", "tags": "TagA"}],
            },
        )

    async def test_producer_uses_route_of_registered_broker(self) -> None:
        """The C++ producer accepts rmq's route and sends to the registered broker's queues."""
        await self.register({"TopicInterop": topic_config("TopicInterop", 4)})
        proc = self.spawn_producer("TopicInterop", "routed")
        send = await self.broker.wait_for_code(RequestCode.SEND_MESSAGE, timeout=20)
        fields = send.ext_fields
        self.assertEqual(fields["topic"], "TopicInterop")
        self.assertIn(int(fields["queueId"]), range(4))
        self.assertEqual(send.body, b"routed")
        sent = await proc.wait_event("sent", timeout=20)
        self.assertEqual(sent["status"], "OK")
        # The C++ client reports its own UNIQ_KEY as the message id and our queueOffset.
        self.assertIn(f"UNIQ_KEY\x01{sent['msg_id']}\x02", fields["properties"])
        self.assertEqual(sent["offset"], 0)
        self.assertEqual(await proc.finished(timeout=20), 0)

    async def test_unknown_topic_falls_back_to_tbw102_route(self) -> None:
        """For a topic the NameServer lacks, the C++ producer uses TBW102's route (auto-create)."""
        await self.register({"TBW102": topic_config("TBW102", 8, perm=7)})
        proc = self.spawn_producer("TopicAutoCreated", "auto")
        send = await self.broker.wait_for_code(RequestCode.SEND_MESSAGE, timeout=20)
        self.assertEqual(send.ext_fields["topic"], "TopicAutoCreated")
        self.assertEqual(send.ext_fields["defaultTopic"], "TBW102")
        await proc.wait_event("sent", timeout=20)
        self.assertEqual(await proc.finished(timeout=20), 0)

    async def test_no_route_without_broker(self) -> None:
        """With no broker registered, rmq answers TOPIC_NOT_EXIST and the C++ send fails cleanly."""
        proc = self.spawn_producer("TopicNowhere", "lost")
        failed = await proc.wait_event("send_failed", timeout=20)
        self.assertIn("No route info", failed["error"])
        self.assertEqual(self.broker.requests, [])
        self.assertEqual(await proc.finished(timeout=20), 0)
