"""Client configuration: NameServer address resolution and the client id (Java ``ClientConfig``).

NameServer addresses come, in this order, from: the constructor argument; the client property
``rocketmq.namesrv.addr``; the ``NAMESRV_ADDR`` environment variable; an HTTP endpoint named by the
property ``rocketmq.namesrv.domain`` (see :mod:`rmq.client.nsaddr`).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping

import attrs

NAMESRV_ADDR_PROPERTY = "rocketmq.namesrv.addr"
NAMESRV_ADDR_ENV = "NAMESRV_ADDR"
NAMESRV_DOMAIN_PROPERTY = "rocketmq.namesrv.domain"
NAMESRV_DOMAIN_SUBGROUP_PROPERTY = "rocketmq.namesrv.domain.subgroup"
CLIENT_IP_PROPERTY = "rocketmq.client.localIP"


def split_namesrv_addr(addr: str | None) -> list[str]:
    """``"h1:9876;h2:9876"`` → ``["h1:9876", "h2:9876"]`` (blank parts dropped)."""
    if not addr:
        return []
    return [a.strip() for a in addr.replace(",", ";").split(";") if a.strip()]


def resolve_namesrv_addr(
    argument: str | None,
    properties: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The static NameServer list: argument, then property, then environment; None if none."""
    if argument:
        return argument
    props = properties or {}
    if props.get(NAMESRV_ADDR_PROPERTY):
        return props[NAMESRV_ADDR_PROPERTY]
    env = os.environ if environ is None else environ
    return env.get(NAMESRV_ADDR_ENV) or None


def namesrv_http_url(properties: Mapping[str, str] | None) -> str | None:
    """The NameServer address endpoint URL, or None when ``rocketmq.namesrv.domain`` is unset.

    Like Java's ``MixAll.getWSAddr``: ``http://<domain>:8080/rocketmq/<subgroup>``; a domain that
    carries its own port (or a full ``http://`` URL prefix) is used as given.
    """
    props = properties or {}
    domain = props.get(NAMESRV_DOMAIN_PROPERTY)
    if not domain:
        return None
    subgroup = props.get(NAMESRV_DOMAIN_SUBGROUP_PROPERTY, "nsaddr")
    if domain.startswith(("http://", "https://")):
        base = domain.rstrip("/")
    elif ":" in domain:
        base = "http://" + domain
    else:
        base = f"http://{domain}:8080"
    return f"{base}/rocketmq/{subgroup}"


def local_ip() -> str:
    """A non-loopback IPv4 address of this host if one is found cheaply, else 127.0.0.1."""
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            ip = str(info[4][0])
            if not ip.startswith("127."):
                return ip
    except OSError:
        pass
    return "127.0.0.1"


def unique_instance_name() -> str:
    """``<pid>#<random hex>``: unique per client instance even for containers sharing an IP."""
    return f"{os.getpid()}#{uuid.uuid4().hex[:16]}"


@attrs.define
class ClientConfig:
    """Settings shared by every producer and consumer of one client instance (seconds)."""

    namesrv_addr: str | None = None
    properties: dict[str, str] = attrs.Factory(dict)
    instance_name: str = "DEFAULT"
    client_ip: str | None = None
    unit_name: str | None = None
    poll_name_server_interval: float = 30.0
    heartbeat_broker_interval: float = 30.0
    persist_consumer_offset_interval: float = 5.0
    rebalance_interval: float = 20.0
    namesrv_http_interval: float = 120.0
    request_timeout: float = 3.0

    def resolved_ip(self) -> str:
        """The IP part of the client id."""
        return self.client_ip or self.properties.get(CLIENT_IP_PROPERTY) or local_ip()

    def client_id(self) -> str:
        """``ip@instance`` (Java ``buildMQClientId``); ``DEFAULT`` becomes a unique instance name,
        and the unit name, if any, is appended after ``@``."""
        instance = self.instance_name
        if instance == "DEFAULT":
            instance = unique_instance_name()
            self.instance_name = instance
        cid = f"{self.resolved_ip()}@{instance}"
        if self.unit_name:
            cid += f"@{self.unit_name}"
        return cid
