"""Who this broker is on the network, known fully only once it listens (ephemeral ports)."""

from __future__ import annotations

import attrs

from rmq.broker.config import BrokerConfig


@attrs.define
class BrokerIdentity:
    """Cluster/name/id and the advertised address; ``listen_port`` is set once listening."""

    cluster_name: str
    broker_name: str
    broker_id: int
    broker_ip1: str
    listen_port: int
    ha_server_addr: str
    permission: int = 6

    @classmethod
    def from_config(cls, config: BrokerConfig) -> BrokerIdentity:
        """The identity a config describes (listen port may still be 0)."""
        return cls(
            cluster_name=config.cluster_name,
            broker_name=config.broker_name,
            broker_id=config.broker_id,
            broker_ip1=config.broker_ip1,
            listen_port=config.listen_port,
            ha_server_addr=config.ha_server_addr,
            permission=config.broker_permission,
        )

    @property
    def broker_addr(self) -> str:
        """``brokerIP1:listenPort`` (the store host written into every record)."""
        return f"{self.broker_ip1}:{self.listen_port}"
