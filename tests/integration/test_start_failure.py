"""A broker that cannot start: rmq.testing fails cleanly, twistd processes exit with status 1."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import tempfile
import threading

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from rmq.store.memory import MemoryMessageStore
from rmq.testing import start_local_cluster


class StoreStartError(Exception):
    """What FailingStartStore.start fails with."""


class FailingStartStore(MemoryMessageStore):
    """A memory store whose start fails."""

    def start(self) -> Deferred[None]:
        """Fail like a store that cannot open its directory."""
        return fail(StoreStartError("store directory unusable"))


def lock_store(test: TestCase, store_dir: str) -> None:
    """Hold a store directory's lock as a running broker does (released at cleanup)."""
    os.makedirs(store_dir, exist_ok=True)
    fd = os.open(os.path.join(store_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    test.addCleanup(os.close, fd)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class LocalClusterStartFailureTests(TestCase):
    async def test_failing_store(self) -> None:
        """start_local_cluster fails with the store's error, removes its temp directory and
        leaves no port or timer (trial's dirty-reactor check covers the NameServer's port)."""
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        self.patch(tempfile, "tempdir", tmp)
        with self.assertRaises(StoreStartError):
            await start_local_cluster(reactor, store=FailingStartStore(reactor))
        self.assertEqual(len(self.flushLoggedErrors(StoreStartError)), 1)
        self.assertEqual(os.listdir(tmp), [])

    async def test_locked_file_store(self) -> None:
        """With the file store locked by another broker, start_local_cluster fails with that
        reason, starts no thread and writes no config table into the other broker's directory."""
        data = os.path.abspath(self.mktemp())
        lock_store(self, os.path.join(data, "store"))
        threads = set(threading.enumerate())
        with self.assertRaises(RuntimeError) as cm:
            await start_local_cluster(reactor, data_dir=data, file_store=True)
        self.assertIn("locked by another process", str(cm.exception))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(set(threading.enumerate()) - threads, set())
        self.assertFalse(os.path.exists(os.path.join(data, "store", "config", "topics.json")))


class TwistdProcess(ProcessProtocol):
    """A twistd child; ``ended`` fires with its exit code."""

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[int | None] = Deferred()
        self.pid: int | None = None

    def connectionMade(self) -> None:
        """Remember the PID."""
        assert self.transport is not None
        self.pid = self.transport.pid  # type: ignore[attr-defined]

    def outReceived(self, data: bytes) -> None:
        """Keep the log."""
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        """Fire ``ended`` with the exit code (None when killed by a signal)."""
        value = reason.value
        code = value.exitCode if isinstance(value, ProcessTerminated) else 0
        self.ended.callback(code)


class TwistdStartFailureTests(TestCase):
    timeout = 60

    async def run_twistd(self, *args: str) -> tuple[TwistdProcess, int | None]:
        """Run ``twistd -n`` with ``args``; its protocol and exit code once it ended."""
        proto = TwistdProcess()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        reactor.spawnProcess(
            proto,
            sys.executable,
            [sys.executable, twistd, "-n", "--pidfile=", "--logfile=-", *args],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            path=os.getcwd(),
        )

        def cleanup() -> Deferred[int | None]:
            if not proto.ended.called and proto.pid is not None:
                os.kill(proto.pid, signal.SIGKILL)
            return proto.ended

        self.addCleanup(cleanup)
        ended = proto.ended
        ended.addTimeout(45, reactor)
        code = await ended
        return proto, code

    async def test_standalone_exits(self) -> None:
        """twistd rmq-standalone whose store is locked logs why and exits with status 1 (its
        NameServer does not stay up)."""
        data = os.path.abspath(self.mktemp())
        lock_store(self, os.path.join(data, "store"))
        proto, code = await self.run_twistd(
            "rmq-standalone", "--data", data, "--namesrv-port", "0", "--broker-port", "0"
        )
        self.assertEqual(code, 1, proto.output[-3000:])
        self.assertIn(b"could not start: RuntimeError: store", proto.output)
        self.assertIn(b"locked by another process", proto.output)
        self.assertIn(b"NameServer listening", proto.output)
        self.assertIn(b"Server Shut Down", proto.output)

    async def test_broker_exits(self) -> None:
        """twistd rmq-broker whose store is locked (a failure before the reactor runs) exits
        with status 1."""
        root = os.path.abspath(self.mktemp())
        lock_store(self, root)
        proto, code = await self.run_twistd(
            "rmq-broker", "-p", "0", "-s", root, "-n", "127.0.0.1:1"
        )
        self.assertEqual(code, 1, proto.output[-3000:])
        self.assertIn(b"locked by another process", proto.output)
