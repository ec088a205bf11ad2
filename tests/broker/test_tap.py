"""Command lines of twistd rmq-broker and rmq-standalone, and broker.conf loading."""

from __future__ import annotations

import fcntl
import os

from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ReactorNotRunning
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from rmq import standalone
from rmq.broker import tap
from rmq.broker.config import configs_from_properties, load_broker_config
from rmq.broker.service import BrokerService
from rmq.broker.tap import Options, make_broker_service
from rmq.namesrv.service import NamesrvService
from rmq.standalone import Options as StandaloneOptions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BrokerOptionsTests(SynchronousTestCase):
    def test_worked_example(self) -> None:
        """etc/broker-a.conf loads; command-line options override it."""
        options = Options()
        options.parseOptions(
            ["-c", os.path.join(REPO, "etc", "broker-a.conf"), "-p", "10999", "-n", "h:1;h:2"]
        )
        config, store = options.broker_config, options.store_config
        self.assertEqual((config.broker_name, config.listen_port), ("broker-a", 10999))
        self.assertEqual(config.namesrv_addrs, ["h:1", "h:2"])
        self.assertEqual(store.flush_disk_type, "ASYNC_FLUSH")
        self.assertEqual(store.store_path_root_dir, config.store_path_root_dir)
        self.assertFalse(options["memory-store"])

    def test_bad_value_names_key(self) -> None:
        """A bad value is a usage error naming the key."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("defaultTopicQueueNums=many\n")
        with self.assertRaises(UsageError) as cm:
            load_broker_config(path)
        self.assertIn("defaultTopicQueueNums", str(cm.exception))
        with open(path, "w") as f:
            f.write("brokerRole=BOSS\n")
        with self.assertRaises(UsageError) as cm:
            load_broker_config(path)
        self.assertIn("brokerRole", str(cm.exception))

    def test_unknown_key_logged(self) -> None:
        """An unknown key is logged by name and otherwise ignored."""
        from twisted.logger import capturedLogs

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("noSuchKey=1\nflushDiskType=SYNC_FLUSH\n")
        with capturedLogs() as events:
            config, store = load_broker_config(path)
        self.assertEqual(store.flush_disk_type, "SYNC_FLUSH")
        self.assertEqual([e.get("key") for e in events if e.get("key")], ["noSuchKey"])

    def test_missing_file(self) -> None:
        """An unreadable config file is a usage error."""
        self.assertRaises(UsageError, load_broker_config, self.mktemp())

    def test_not_utf8_file(self) -> None:
        """A broker.conf that is not UTF-8 text is a usage error naming the file."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"brokerName=\xff\xfe\n")
        with self.assertRaises(UsageError) as cm:
            load_broker_config(path)
        self.assertIn(path, str(cm.exception))


class StandaloneOptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Defaults: NameServer 9876, broker 10911, data ./data."""
        options = StandaloneOptions()
        options.parseOptions([])
        props = options.broker_properties()
        self.assertEqual(props["listenPort"], "10911")
        self.assertEqual(props["namesrvAddr"], "127.0.0.1:9876")
        self.assertEqual(props["storePathRootDir"], os.path.abspath(os.path.join("data", "store")))

    def test_bad_port(self) -> None:
        """A non-numeric port is refused."""
        self.assertRaises(UsageError, StandaloneOptions().parseOptions, ["--broker-port", "x"])

    def test_extra_config_file(self) -> None:
        """-c adds broker.conf keys; a missing file is a usage error naming it."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("defaultTopicQueueNums=3\n")
        options = StandaloneOptions()
        options.parseOptions(["-c", path])
        self.assertEqual(options.broker_properties()["defaultTopicQueueNums"], "3")
        missing = self.mktemp()
        with self.assertRaises(UsageError) as cm:
            StandaloneOptions().parseOptions(["-c", missing])
        self.assertIn(missing, str(cm.exception))


class MetricsPortTests(SynchronousTestCase):
    """``metricsPort`` wires the Prometheus page of docs/metrics.md into the broker's tree."""

    def build(self, extra: dict[str, str]) -> tuple[MemoryReactorClock, BrokerService]:
        reactor = MemoryReactorClock()
        props = {"listenPort": "10911", "storePathRootDir": self.mktemp(), **extra}
        broker_config, store_config = configs_from_properties(props)
        service = make_broker_service(reactor, broker_config, store_config, memory_store=True)
        return reactor, service

    def test_off_by_default(self) -> None:
        """Without metricsPort the broker's tree has no metrics service."""
        _, service = self.build({})
        self.assertRaises(KeyError, service.getServiceNamed, "metrics")

    def test_metrics_port_serves_prometheus_page(self) -> None:
        """metricsPort=N adds a child service listening on N (listenInterface) that answers
        GET /metrics with the broker's counters labelled with its name."""
        reactor, service = self.build({"metricsPort": "5557", "brokerName": "broker-m"})
        metrics = service.getServiceNamed("metrics")
        metrics.startService()  # the broker's startService starts it with its other children
        ((port, factory, _, interface),) = reactor.tcpServers
        self.assertEqual((port, interface), (5557, "0.0.0.0"))
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        answer = transport.value()
        self.assertIn(b"200 OK", answer.split(b"\r\n", 1)[0])
        self.assertIn(b'rmq_broker_put_messages_total{broker="broker-m"} 0', answer)
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(metrics.stopService())

    def test_bad_metrics_port_refused(self) -> None:
        """A negative metricsPort is a usage error naming the key."""
        with self.assertRaises(UsageError) as cm:
            configs_from_properties({"metricsPort": "-1"})
        self.assertIn("metricsPort", str(cm.exception))


def _lock_store(test: SynchronousTestCase, store_dir: str) -> None:
    """Hold the store directory's lock as a running broker would (released at cleanup)."""
    os.makedirs(store_dir, exist_ok=True)
    fd = os.open(os.path.join(store_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    test.addCleanup(os.close, fd)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _run_when_running_hooks(reactor: MemoryReactorClock) -> None:
    """What the reactor does once twistd starts it: run the callWhenRunning hooks."""
    reactor.running = True
    hooks, reactor.whenRunningHooks = reactor.whenRunningHooks, []
    for f, args, kwargs in hooks:
        f(*args, **kwargs)


class StartFailureExitTests(SynchronousTestCase):
    """Under twistd a broker that cannot start stops the process (exit status 1)."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.statuses: list[int] = []
        self.patch(tap, "exit_status_at_exit", self.statuses.append)
        self.patch(tap, "global_reactor", lambda: self.reactor)
        self.patch(standalone, "global_reactor", lambda: self.reactor)

    def test_standalone_stops_with_its_nameserver(self) -> None:
        """rmq-standalone whose store is locked logs why, stops the reactor once it runs, sets
        exit status 1, and the reactor's shutdown stops the NameServer too."""
        data = self.mktemp()
        _lock_store(self, os.path.join(data, "store"))
        options = StandaloneOptions()
        options.parseOptions(["--data", data, "--namesrv-port", "0", "--broker-port", "0"])
        top = standalone.makeService(options)
        assert isinstance(top, MultiService)
        with capturedLogs() as events:
            top.startService()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(self.reactor.hasStopped)  # twistd has not started the reactor yet
        _run_when_running_hooks(self.reactor)
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.statuses, [tap.START_FAILURE_EXIT_STATUS])
        (critical,) = [e for e in events if e.get("log_namespace") == "rmq.broker.tap"]
        self.assertIn("locked by another process", formatEvent(critical))
        self.assertIn("exit status 1", formatEvent(critical))
        namesrv = next(s for s in top if isinstance(s, NamesrvService))
        self.assertIsNotNone(namesrv.listener.port)
        self.successResultOf(top.stopService())  # what the reactor's shutdown does
        self.assertIsNone(namesrv.listener.port)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_broker_failing_while_reactor_runs(self) -> None:
        """rmq-broker whose store fails after the reactor started stops it at once."""
        root = self.mktemp()
        _lock_store(self, root)
        options = Options()
        options.parseOptions(["-p", "0", "-s", root, "-n", "127.0.0.1:1"])
        service = tap.makeService(options)
        self.reactor.running = True
        service.startService()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.statuses, [1])
        self.successResultOf(service.stopService())

    def test_stop_tolerates_a_stopping_reactor(self) -> None:
        """A reactor already shutting down (a signal came first) is left to finish."""

        def stopping() -> None:
            raise ReactorNotRunning()

        self.reactor.running = True
        self.reactor.stop = stopping  # type: ignore[method-assign]
        service = make_broker_service(
            self.reactor,
            *configs_from_properties({"listenPort": "0", "storePathRootDir": self.mktemp()}),
        )
        tap.stop_process_on_start_failure(self.reactor, service, self.statuses.append)
        assert service.on_start_failure is not None
        service.on_start_failure(Failure(RuntimeError("boom")))
        self.assertEqual(self.statuses, [1])
