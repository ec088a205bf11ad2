"""A store left by RocketMQ 4.9.7 (``kill -9``), served by ``twistd rmq-broker`` to the C++ client.

The issue-3 "done when" for the store, end to end: ``vectors/store-crash-4.9.7/store.tar.gz`` is
unpacked into a temp dir, a real rmq NameServer runs in the test's reactor, and ``twistd -n
rmq-broker`` runs as a child process on that directory with the settings of the vector's README.
The broker must take the abnormal (crash) recovery path, register both fixture topics, answer
``QUERY_CONSUMER_OFFSET`` for ``CID_FIXTURE`` with the offsets 4.9.7 committed, and let the real
C++ PushConsumer (rocketmq-client-cpp 1.0.1, a new group, so it starts at offset 0) consume every
one of the manifest's 1,500 messages exactly once on its real topic, delayed ones included, with
body, key, tags and ``seq`` property intact. The broker is stopped with SIGTERM and must exit
cleanly (SIGKILL by PID only if a test fails first).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tarfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from rmq.common import fastjson
from rmq.common.asyncutil import global_reactor
from rmq.common.route import TopicRouteData
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.service import build_namesrv_service
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import new_request
from tests.support.cpp import CppHarness, CppProcess, Event
from tests.support.vectors import require_vectors

T = TypeVar("T")

VECTOR = "store-crash-4.9.7"
TOPICS = ("FixtureA", "FixtureB")
FIXTURE_GROUP = "CID_FIXTURE"
#: Groups 4.9.7 never saw (one per topic: a group's consumers share its queues whatever they
#: subscribe to), so the C++ consumer starts at offset 0 of every queue.
NEW_GROUP = "CID_RMQ_INTEROP_497_{topic}"

#: The README's settings, plus retention kept away from the unpacked files (their mtimes are the
#: vector's, so they may be "older than 72 h" and the hour may be deleteWhen) and from a full
#: disk on a shared CI machine: no commit-log file may be deleted while the test reads them.
BROKER_CONF = """\
brokerClusterName=DefaultCluster
brokerName=broker-a
brokerId=0
brokerIP1=127.0.0.1
listenPort=0
listenInterface=127.0.0.1
namesrvAddr={namesrv}
storePathRootDir={store}
flushDiskType=SYNC_FLUSH
mappedFileSizeCommitLog=1048576
mappedFileSizeConsumeQueue=1200
maxHashSlotNum=100
maxIndexNum=400
fileReservedTime=876000
diskMaxUsedSpaceRatio=95
diskSpaceCleanForciblyRatio=0.99
diskSpaceWarningLevelRatio=0.99
"""

RECOVERED = re.compile(rb"Store \S+ recovered \((normal|abnormal)\)")


class BrokerChild(ProcessProtocol):
    """A ``twistd rmq-broker`` child: its output so far and ``ended`` (fires at exit)."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.pid: int | None = None
        self.reason: Failure | None = None
        self.ended: Deferred[None] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802 (Twisted name)
        """Remember the child's PID (for SIGTERM, and SIGKILL at cleanup)."""
        assert self.transport is not None
        self.pid = self.transport.pid  # type: ignore[attr-defined]

    def childDataReceived(self, fd: int, data: bytes) -> None:  # noqa: N802 (Twisted name)
        """Keep stdout and stderr (``--logfile=-``: the log goes to stdout)."""
        self.output += data

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 (Twisted name)
        """Record how the child ended and fire ``ended``."""
        self.reason = reason
        self.pid = None
        self.ended.callback(None)

    def tail(self, size: int = 4000) -> str:
        """The end of the broker's log, for failure messages."""
        return bytes(self.output[-size:]).decode("utf-8", errors="replace")


async def poll(
    reactor: Any,
    check: Callable[[], Awaitable[T | None]],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Await ``check()`` every ``interval`` s until it returns non-None; fail at the deadline."""
    deadline = reactor.seconds() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if reactor.seconds() >= deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        await deferLater(reactor, interval, lambda: None)


def unpack_store(tar_path: Path, dest: str) -> None:
    """Unpack the vector's tarball into ``dest`` (data-only filter when Python has one)."""
    with tarfile.open(tar_path) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without extraction filters
            tar.extractall(dest)  # noqa: S202 - our own vector file


class CppConsumesRocketMQ497StoreTests(TestCase):
    """twistd rmq-broker on the 4.9.7 crash store, consumed by the real C++ client."""

    timeout = 120

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        return Deferred.fromCoroutine(self._set_up())

    async def _set_up(self) -> None:
        vector = require_vectors() / VECTOR
        if not (vector / "store.tar.gz").is_file():
            raise SkipTest(f"{vector}/store.tar.gz not found")
        self.reactor = global_reactor()
        self.manifest: list[dict[str, Any]] = json.loads(
            (vector / "manifest.json").read_text("utf-8")
        )["sent"]
        self.at_least = json.loads((vector / "manifest.json").read_text("utf-8"))[
            "consumed_by_CID_FIXTURE_at_least"
        ]
        root = os.path.abspath(self.mktemp())
        self.store = os.path.join(root, "store")
        os.makedirs(self.store)
        unpack_store(vector / "store.tar.gz", self.store)
        # What 4.9.7 committed, read before the broker may rewrite the file.
        offsets = self.config_table("consumerOffset.json")
        self.fixture_offsets = {
            int(qid): int(off) for qid, off in offsets[f"FixtureA@{FIXTURE_GROUP}"].items()
        }
        self.delay_offsets = self.config_table("delayOffset.json")
        for topic in TOPICS:
            self.assertNotIn(f"{topic}@{NEW_GROUP.format(topic=topic)}", offsets)
        self.assertTrue(os.path.exists(os.path.join(self.store, "abort")))

        namesrv = build_namesrv_service(
            NamesrvConfig(
                rocketmq_home=root,
                kv_config_path=os.path.join(root, "namesrv", "kvConfig.json"),
                listen_port=0,
                bind_address="127.0.0.1",
            ),
            TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1"),
            self.reactor,
        )
        namesrv.startService()
        self.addCleanup(namesrv.stopService)
        port = await namesrv.when_listening()
        self.namesrv_addr = f"127.0.0.1:{getattr(port.getHost(), 'port', 0)}"

        self.client = RemotingClient(self.reactor, tcp_endpoint_factory(self.reactor))
        self.addCleanup(self.client.close)
        conf = os.path.join(root, "broker.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(BROKER_CONF.format(namesrv=self.namesrv_addr, store=self.store))
        self.broker = self.spawn_broker(conf, root)
        self.harness = CppHarness(self, self.reactor)

    def config_table(self, name: str) -> dict[str, Any]:
        """The ``offsetTable`` of one of the store's ``config/*.json`` files (fastjson style)."""
        table: dict[str, Any] = fastjson.loads(Path(self.store, "config", name).read_bytes())[
            "offsetTable"
        ]
        return table

    def spawn_broker(self, conf: str, cwd: str) -> BrokerChild:
        """``twistd -n rmq-broker -c conf`` as a child; SIGKILLed by PID at cleanup if still up."""
        child = BrokerChild()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, twistd, "-n", "--pidfile=", "--logfile=-", "rmq-broker", "-c", conf],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            path=cwd,
        )

        async def cleanup() -> None:
            if not child.ended.called and child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)
            await child.ended

        self.addCleanup(lambda: Deferred.fromCoroutine(cleanup()))
        return child

    async def routed(self, topic: str) -> TopicRouteData:
        """The NameServer's route of ``topic`` once the broker has registered it (bounded)."""

        async def check() -> TopicRouteData | None:
            if self.broker.ended.called:
                raise AssertionError(f"broker exited before registering\n{self.broker.tail()}")
            request = new_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
            response = await self.client.invoke(self.namesrv_addr, request, timeout=5)
            if response.code != ResponseCode.SUCCESS:
                return None
            return TopicRouteData.from_json(response.body)

        return await poll(self.reactor, check, 30, f"route of {topic} (broker log below)")

    async def query_offset(self, addr: str, group: str, topic: str, queue_id: int) -> int:
        """QUERY_CONSUMER_OFFSET (14) as a client sends it; -1 for QUERY_NOT_FOUND."""
        request = new_request(
            RequestCode.QUERY_CONSUMER_OFFSET,
            {"consumerGroup": group, "topic": topic, "queueId": queue_id},
        )
        response = await self.client.invoke(addr, request, timeout=5)
        if response.code == ResponseCode.QUERY_NOT_FOUND:
            return -1
        self.assertEqual(response.code, ResponseCode.SUCCESS, response.remark)
        return response.ext_int("offset")

    async def stop_broker(self) -> None:
        """SIGTERM the broker and wait (bounded) for a clean exit."""
        assert self.broker.pid is not None
        os.kill(self.broker.pid, signal.SIGTERM)
        await self.broker.ended.addTimeout(30, self.reactor)
        reason = self.broker.reason
        assert reason is not None
        if isinstance(reason.value, ProcessTerminated):
            # twistd re-raises SIGTERM after a clean shutdown, so the status names the signal.
            self.assertEqual(reason.value.signal, signal.SIGTERM, self.broker.tail())
        else:
            self.assertIsInstance(reason.value, ProcessDone, self.broker.tail())
        self.assertNotIn(b"Traceback", bytes(self.broker.output), self.broker.tail())

    def consume(self, topic: str) -> CppProcess:
        """A C++ clustering PushConsumer of ``topic`` in a new group, reading ``seq``."""
        return self.harness.spawn(
            "push_consumer",
            {
                "namesrv": self.namesrv_addr,
                "group": NEW_GROUP.format(topic=topic),
                "topic": topic,
                "read_props": ["seq"],
            },
            name=f"consumer-{topic}",
        )

    def check_message(self, entry: dict[str, Any], event: Event) -> None:
        """One received message carries what the manifest says 4.9.7 stored."""
        what = (entry["seq"], entry["keys"])
        self.assertEqual(event["topic"], entry["topic"], what)
        self.assertEqual(event["keys"], entry["keys"], what)
        self.assertEqual(event["tags"], entry["tags"], what)
        self.assertEqual(event["body_len"], entry["body_len"], what)
        self.assertEqual(event["body_sha256"], entry["body_sha256"], what)
        self.assertEqual(event["props"]["seq"], str(entry["seq"]), what)
        self.assertEqual(event["props"]["UNIQ_KEY"], entry["msg_id"], what)
        self.assertEqual(event["reconsume_times"], 0, what)
        if entry["delay_level"]:
            # Re-stored by 4.9.7's schedule service: the real topic and queue kept as properties.
            # (The SendResult offset was its SCHEDULE_TOPIC_XXXX offset.)
            props = event["props"]
            self.assertEqual(props["DELAY"], str(entry["delay_level"]), what)
            self.assertEqual(props["REAL_TOPIC"], entry["topic"], what)
            self.assertEqual(props["REAL_QID"], str(event["queue_id"]), what)
        else:
            self.assertEqual(event["queue_offset"], entry["offset"], what)

    async def test_crash_recovery_then_cpp_consumes_every_manifest_message(self) -> None:
        """After crash recovery C++ gets all 1,500 once, intact; CID_FIXTURE's offsets load."""
        route_a = await self.routed("FixtureA")
        await self.routed("FixtureB")
        match = RECOVERED.search(bytes(self.broker.output))
        assert match is not None, self.broker.tail()
        self.assertEqual(match.group(1), b"abnormal", self.broker.tail())
        (broker_data,) = route_a.broker_datas
        self.assertEqual(
            (broker_data.cluster, broker_data.broker_name), ("DefaultCluster", "broker-a")
        )
        broker_addr = broker_data.broker_addrs[0]

        loaded = {
            qid: await self.query_offset(broker_addr, FIXTURE_GROUP, "FixtureA", qid)
            for qid in sorted(self.fixture_offsets)
        }
        self.assertEqual(loaded, self.fixture_offsets)
        self.assertGreaterEqual(sum(loaded.values()), self.at_least)

        by_key = {entry["keys"]: entry for entry in self.manifest}
        self.assertEqual(len(by_key), len(self.manifest))
        consumers = {topic: self.consume(topic) for topic in TOPICS}
        for topic, consumer in consumers.items():
            expected = {entry["keys"] for entry in self.manifest if entry["topic"] == topic}

            def all_seen(events: list[Event], expected: set[str] = expected) -> bool | None:
                seen = {ev.get("keys") for ev in events if ev["event"] == "received"}
                return True if expected <= seen else None

            await consumer.wait_until(all_seen, timeout=60, what=f"every {topic} message")
        # Stopping now could lose a commit: C++ 1.0.1 shuts down without waiting for callbacks
        # that already reported their message, committing an offset behind them. Its periodic
        # commit (every 5 s) reaches each queue's end once every callback has returned.
        ends = {
            topic: Counter(
                ev["queue_id"]
                for ev in {ev["keys"]: ev for ev in consumer.of_kind("received")}.values()
            )
            for topic, consumer in consumers.items()
        }

        async def committed_at_end() -> bool | None:
            for topic, end in ends.items():
                group = NEW_GROUP.format(topic=topic)
                for qid, count in end.items():
                    if await self.query_offset(broker_addr, group, topic, qid) != count:
                        return None
            return True

        await poll(self.reactor, committed_at_end, 20, "C++ commits at every queue's end")
        for consumer in consumers.values():
            self.assertEqual(await consumer.stop(grace=20), 0, consumer.describe())

        received = [ev for c in consumers.values() for ev in c.of_kind("received")]
        counts = Counter(ev["keys"] for ev in received)
        self.assertEqual({k: n for k, n in counts.items() if n != 1}, {}, "not exactly once")
        self.assertEqual(set(counts), set(by_key))
        for event in received:
            self.check_message(by_key[event["keys"]], event)
        delayed = [ev for ev in received if by_key[ev["keys"]]["delay_level"]]
        self.assertEqual(len(delayed), 30)

        await self.client.close()
        await self.stop_broker()
        self.assertFalse(os.path.exists(os.path.join(self.store, "abort")))
        # Persisted at shutdown: the schedule progress 4.9.7 left (nothing re-delivered twice),
        # CID_FIXTURE's offsets untouched, and the new groups' commits at every queue's end.
        self.assertEqual(self.config_table("delayOffset.json"), self.delay_offsets)
        persisted = self.config_table("consumerOffset.json")
        self.assertEqual(
            {int(q): o for q, o in persisted[f"FixtureA@{FIXTURE_GROUP}"].items()},
            self.fixture_offsets,
        )
        for topic in TOPICS:
            committed = persisted[f"{topic}@{NEW_GROUP.format(topic=topic)}"]
            self.assertEqual({int(q): o for q, o in committed.items()}, dict(ends[topic]), topic)
