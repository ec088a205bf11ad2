"""``twistd -n rmq-broker -c etc/broker-a.conf``: command line → configs → service tree.

The composition root of the broker process (STYLE §4): reads ``broker.conf`` (RocketMQ key names;
command-line options override the file), builds the file store, a RemotingClient for the
NameServers and the broker service tree on the global reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from rmq.broker.config import BrokerConfig, load_broker_config
from rmq.broker.persist import thread_writer
from rmq.broker.service import BrokerService, build_broker_service
from rmq.common.asyncutil import global_reactor
from rmq.remoting.client import tcp_endpoint_factory
from rmq.store.config import MessageStoreConfig
from rmq.store.filestore import FileMessageStore

__all__ = ["Options", "makeService", "make_broker_service"]


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


def makeService(options: Options) -> IService:
    """The broker service for twistd (a failed start stops the process)."""
    reactor = global_reactor()
    service = make_broker_service(
        reactor,
        options.broker_config,
        options.store_config,
        bool(options["memory-store"]),
    )
    service.on_start_failure = lambda _: reactor.stop()
    return service
