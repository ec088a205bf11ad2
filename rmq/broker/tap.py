"""``twistd -n rmq-broker -c etc/broker-a.conf``: command line → configs → service tree.

The composition root of the broker process (STYLE §4): reads ``broker.conf`` (RocketMQ key names;
command-line options override the file), builds the file store, a RemotingClient for the
NameServers and the broker service tree on the global reactor.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from rmq.broker.config import BrokerConfig, load_broker_config
from rmq.broker.persist import thread_writer
from rmq.broker.service import BrokerService, build_broker_service
from rmq.common.asyncutil import global_reactor
from rmq.remoting.client import tcp_endpoint_factory
from rmq.store.config import MessageStoreConfig
from rmq.store.filestore import FileMessageStore

__all__ = [
    "Options",
    "makeService",
    "make_broker_service",
    "stop_process_on_start_failure",
    "exit_status_at_exit",
    "START_FAILURE_EXIT_STATUS",
]

_log = Logger(namespace="rmq.broker.tap")

#: Exit status of a twistd process whose broker failed to start.
START_FAILURE_EXIT_STATUS = 1


class Options(usage.Options):
    """``twistd rmq-broker -c broker.conf [-p PORT] [-n NAMESRV] [--store DIR]``."""

    optParameters = [
        ["config", "c", None, "broker.conf (java.util.Properties syntax, RocketMQ key names)"],
        ["listenPort", "p", None, "port to listen on (overrides listenPort)"],
        ["namesrvAddr", "n", None, "NameServer addresses host:port;host:port (overrides)"],
        ["storePathRootDir", "s", None, "store directory (overrides storePathRootDir)"],
    ]
    optFlags = [["memory-store", None, "keep messages in memory only (demos; nothing survives)"]]

    def postOptions(self) -> None:
        """Load and check the configuration now, so a bad key is a usage error."""
        overrides = {
            key: self[key]
            for key in ("listenPort", "namesrvAddr", "storePathRootDir")
            if self[key] is not None
        }
        self.broker_config: BrokerConfig
        self.store_config: MessageStoreConfig
        self.broker_config, self.store_config = load_broker_config(self["config"], overrides)


def make_broker_service(
    reactor: Any,
    broker_config: BrokerConfig,
    store_config: MessageStoreConfig,
    memory_store: bool = False,
    namesrv_addrs: Callable[[], list[str]] | None = None,
) -> BrokerService:
    """The broker service on ``reactor`` with the file store (or the memory store).

    ``metricsPort`` > 0 adds the Prometheus page (``GET /metrics``) on that port.
    """
    store = None if memory_store else FileMessageStore(store_config, reactor, reactor=reactor)
    metrics = broker_config.metrics_endpoint
    return build_broker_service(
        broker_config,
        serverFromString(reactor, broker_config.listen_endpoint),
        reactor,
        store=store,
        store_config=store_config,
        client_endpoint_factory=tcp_endpoint_factory(reactor),
        writer=thread_writer(reactor),
        namesrv_addrs=namesrv_addrs,
        ha_endpoint=serverFromString(reactor, broker_config.ha_listen_endpoint),
        metrics_endpoint=serverFromString(reactor, metrics) if metrics is not None else None,
    )


def exit_status_at_exit(status: int) -> None:
    """Make the interpreter exit with ``status`` once twistd has finished.

    twistd cannot be told an exit status: after the reactor stops it removes its pid file,
    stops logging and returns, and the process exits 0. An ``atexit`` handler runs after all
    that; it flushes stdout/stderr and ends the process with ``os._exit(status)`` (so exit
    handlers registered before it are skipped).
    """
    atexit.register(_exit_now, status)


def _exit_now(status: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _stop_reactor(reactor: Any) -> None:
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass  # already shutting down (a signal arrived first)


def stop_process_on_start_failure(
    reactor: Any,
    service: BrokerService,
    set_exit_status: Callable[[int], None] | None = None,
) -> None:
    """When ``service`` fails to start: log why, stop ``reactor``, exit with status 1.

    For twistd processes (rmq-broker, rmq-standalone). Stopping the reactor stops the whole
    service tree, so an rmq-standalone NameServer does not stay up without its broker. The
    reactor is stopped as soon as it runs: a store that fails synchronously (a locked
    directory) fails inside ``startService``, before twistd starts the reactor.
    ``set_exit_status`` (default :func:`exit_status_at_exit`, looked up at failure time) is
    called with :data:`START_FAILURE_EXIT_STATUS`.
    """

    def failed(failure: Failure) -> None:
        status = START_FAILURE_EXIT_STATUS
        _log.critical(
            "Broker {name} could not start: {reason}. Stopping the process (exit status {status}).",
            name=service.broker.config.broker_name,
            reason=f"{type(failure.value).__name__}: {failure.getErrorMessage()}",
            status=status,
        )
        (set_exit_status if set_exit_status is not None else exit_status_at_exit)(status)
        reactor.callWhenRunning(_stop_reactor, reactor)

    service.on_start_failure = failed


def makeService(options: Options) -> IService:
    """The broker service for twistd (a failed start stops the process, exit status 1)."""
    reactor = global_reactor()
    service = make_broker_service(
        reactor,
        options.broker_config,
        options.store_config,
        bool(options["memory-store"]),
    )
    stop_process_on_start_failure(reactor, service)
    return service
