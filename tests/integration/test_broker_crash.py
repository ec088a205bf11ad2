"""A broker process killed with SIGKILL under SYNC_FLUSH loses no message it answered SEND_OK.

Runs ``twistd -n rmq-broker`` as a child process on an ephemeral loopback port with the file store,
sends messages as fast as the broker answers, kills it with SIGKILL mid-stream, restarts it on the
same directory, and pulls every queue: every acknowledged message must be there, intact.
"""

from __future__ import annotations

import os
import re
import signal
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from rmq.common.errors import RMQError
from rmq.common.message import decode_messages
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import new_request

LISTENING = re.compile(rb"listening on (127\.0\.0\.1:\d+)")


class BrokerProcess(ProcessProtocol):
    """A twistd rmq-broker child; ``listening`` fires with its address, ``ended`` at exit."""

    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[str] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.pid: int | None = None

    def connectionMade(self) -> None:
        """Remember the PID."""
        assert self.transport is not None
        self.pid = self.transport.pid  # type: ignore[attr-defined]

    def outReceived(self, data: bytes) -> None:
        """Watch the log for the listening line."""
        self.output += data
        m = LISTENING.search(self.output)
        if m and not self.listening.called:
            self.listening.callback(m.group(1).decode())

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        """Fire ``ended``; a start that never listened fails ``listening``."""
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.output.decode(errors="replace")[-2000:]))
        self.ended.callback(None)


def _bounded(d: Deferred[str], seconds: float) -> Deferred[str]:
    """``d`` failing with TimeoutError after ``seconds``."""
    d.addTimeout(seconds, reactor)
    return d


class BrokerCrashTests(TestCase):
    timeout = 120

    def start_broker(self, conf: str) -> BrokerProcess:
        proto = BrokerProcess()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        reactor.spawnProcess(
            proto,
            sys.executable,
            [sys.executable, twistd, "-n", "--pidfile=", "--logfile=-", "rmq-broker", "-c", conf],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            path=os.getcwd(),
        )

        async def cleanup() -> None:
            if not proto.ended.called and proto.pid is not None:
                os.kill(proto.pid, signal.SIGKILL)
            await proto.ended

        self.addCleanup(lambda: Deferred.fromCoroutine(cleanup()))
        return proto

    async def test_sigkill_under_sync_flush(self) -> None:
        """Every SEND_OK survives SIGKILL and restart, bodies intact."""
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        conf = os.path.join(root, "broker.conf")
        with open(conf, "w") as f:
            f.write(
                "listenPort=0\nlistenInterface=127.0.0.1\nbrokerIP1=127.0.0.1\n"
                f"storePathRootDir={root}/store\nflushDiskType=SYNC_FLUSH\n"
                "mappedFileSizeCommitLog=8388608\ndefaultTopicQueueNums=4\n"
            )
        client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
        self.addCleanup(client.close)
        broker = self.start_broker(conf)
        addr = await _bounded(broker.listening, 30)
        acked: dict[bytes, int] = {}
        in_flight = 0
        counter = 0

        async def sender(worker: int) -> None:
            nonlocal counter, in_flight
            while not broker.ended.called:
                counter += 1
                body = f"w{worker}-m{counter}".encode()
                req = new_request(
                    RequestCode.SEND_MESSAGE_V2,
                    {
                        "a": "PG",
                        "b": "Crash",
                        "c": "TBW102",
                        "d": 4,
                        "e": counter % 4,
                        "f": 0,
                        "g": 1,
                        "h": 0,
                    },
                    body,
                )
                try:
                    in_flight += 1
                    resp = await client.invoke(addr, req, 5)
                except RMQError:
                    return
                finally:
                    in_flight -= 1
                if resp.code == ResponseCode.SUCCESS:
                    acked[body] = int(resp.ext_fields["queueId"])

        senders = [Deferred.fromCoroutine(sender(i)) for i in range(8)]
        while len(acked) < 300:
            await deferLater(reactor, 0.01, lambda: None)
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGKILL)
        await broker.ended
        await DeferredList(senders, consumeErrors=True)
        client.close_connection(addr)

        again = self.start_broker(conf)
        addr2 = await _bounded(again.listening, 30)
        stored: set[bytes] = set()
        for queue_id in range(4):
            offset = 0
            while True:
                pull = new_request(
                    RequestCode.PULL_MESSAGE,
                    {
                        "consumerGroup": "CG",
                        "topic": "Crash",
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
                resp = await client.invoke(addr2, pull, 10)
                if resp.code != ResponseCode.SUCCESS:
                    break
                stored.update(m.body for m in decode_messages(resp.body))
                offset = int(resp.ext_fields["nextBeginOffset"])
        missing = set(acked) - stored
        self.assertEqual(missing, set(), f"{len(missing)} of {len(acked)} acknowledged lost")
        self.assertGreaterEqual(len(acked), 300)
