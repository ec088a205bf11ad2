"""``twistd -n rmq-standalone [--data DIR]``: a NameServer and one master Broker in one process.

What ``make run`` starts: NameServer on 9876, Broker on 10911 (advertised as 127.0.0.1), data under
``./data`` (``DIR/store`` for the broker, ``DIR/namesrv`` for the KV store). The broker registers
with the in-process NameServer over loopback, exactly as separate processes would.
"""

from __future__ import annotations

import os

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from rmq.broker.config import configs_from_properties
from rmq.broker.service import BrokerService
from rmq.broker.tap import make_broker_service, stop_process_on_start_failure
from rmq.common.asyncutil import deferred_api, global_reactor
from rmq.common.config import read_properties_file
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.service import add_namesrv_service

__all__ = ["Options", "makeService", "build_standalone_service", "standalone_broker"]


class Options(usage.Options):
    """``twistd rmq-standalone [--data DIR] [--namesrv-port N] [--broker-port N] [-c FILE]``."""

    optParameters = [
        ["data", "d", "./data", "data directory (broker store and NameServer KV store)"],
        ["namesrv-port", None, "9876", "NameServer port"],
        ["broker-port", None, "10911", "Broker port"],
        ["host", None, "127.0.0.1", "address the broker advertises (brokerIP1)"],
        ["config", "c", None, "extra broker.conf keys (RocketMQ key names)"],
    ]

    def postOptions(self) -> None:
        """Check the numbers and the extra broker config now."""
        for name in ("namesrv-port", "broker-port"):
            try:
                int(self[name])
            except ValueError:
                raise usage.UsageError(f"--{name} must be a port number") from None
        self.extra: dict[str, str] = {}
        if self["config"]:
            self.extra = read_properties_file(self["config"])
        # Convert now so a bad key is a usage error.
        configs_from_properties(self.broker_properties(), self["config"] or "defaults")

    def broker_properties(self) -> dict[str, str]:
        """broker.conf keys for the standalone broker."""
        data = os.path.abspath(self["data"])
        props = {
            "brokerIP1": self["host"],
            "listenPort": self["broker-port"],
            "storePathRootDir": os.path.join(data, "store"),
            "namesrvAddr": f"127.0.0.1:{self['namesrv-port']}",
        }
        props.update(self.extra)
        return props


class SequentialMultiService(MultiService):
    """Starts children in order and stops them one after the other in reverse order.

    Plain MultiService stops children concurrently; the broker must unregister from the
    NameServer before the NameServer goes away.
    """

    def stopService(self) -> Deferred[None]:
        """Stop the children last-first, each after the previous one finished."""
        Service.stopService(self)
        return self._stop_children()

    @deferred_api
    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            await maybeDeferred(child.stopService)


def build_standalone_service(reactor: object, options: Options) -> MultiService:
    """NameServer, then Broker, as children of one service (the broker stops first)."""
    top = SequentialMultiService()
    data = os.path.abspath(options["data"])
    namesrv_config = NamesrvConfig(
        rocketmq_home=data,
        kv_config_path=os.path.join(data, "namesrv", "kvConfig.json"),
        listen_port=int(options["namesrv-port"]),
    )
    namesrv = add_namesrv_service(
        top,
        namesrv_config,
        serverFromString(reactor, namesrv_config.listen),
        reactor,  # type: ignore[arg-type]
    )

    def namesrv_addrs() -> list[str]:
        # The actual port (the option may be 0 = ephemeral).
        port = namesrv.listener.port
        if port is None:
            return []
        return [f"127.0.0.1:{getattr(port.getHost(), 'port', 0)}"]

    broker_config, store_config = configs_from_properties(options.broker_properties(), "standalone")
    broker = make_broker_service(reactor, broker_config, store_config, namesrv_addrs=namesrv_addrs)
    broker.before_register = namesrv.when_listening
    broker.setServiceParent(top)
    return top


def standalone_broker(top: MultiService) -> BrokerService:
    """The broker of a tree built by :func:`build_standalone_service`."""
    return next(s for s in top if isinstance(s, BrokerService))


def makeService(options: Options) -> IService:
    """The standalone service for twistd.

    A broker that fails to start stops the process (NameServer included) with exit status 1,
    as for ``twistd rmq-broker``.
    """
    reactor = global_reactor()
    top = build_standalone_service(reactor, options)
    stop_process_on_start_failure(reactor, standalone_broker(top))
    return top
