"""``twistd rmq-namesrv``: command line → NamesrvConfig → service tree (composition root)."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from rmq.common.asyncutil import global_reactor
from rmq.namesrv.config import NamesrvConfig, load_namesrv_config
from rmq.namesrv.service import add_namesrv_service, build_namesrv_service

__all__ = ["Options", "makeService", "build_namesrv_service", "add_namesrv_service"]


class Options(usage.Options):
    """``twistd rmq-namesrv [-c namesrv.conf] [-p PORT]``."""

    optParameters = [
        ["config", "c", None, "namesrv.conf (java.util.Properties syntax, RocketMQ key names)"],
        ["listenPort", "p", None, "port to listen on (overrides listenPort from the file)"],
    ]

    def postOptions(self) -> None:
        """Load and check the configuration now, so a bad key is a usage error."""
        overrides = {}
        if self["listenPort"] is not None:
            overrides["listenPort"] = self["listenPort"]
        self.namesrv_config: NamesrvConfig = load_namesrv_config(self["config"], overrides)


def makeService(options: Options) -> IService:
    """The NameServer service for twistd, listening on the configured port."""
    config = options.namesrv_config
    reactor = global_reactor()
    return build_namesrv_service(config, serverFromString(reactor, config.listen), reactor)
