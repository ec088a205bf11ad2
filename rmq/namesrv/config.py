"""NameServer configuration (per RocketMQ's NamesrvConfig and the NameServer's NettyServerConfig).

Keys are RocketMQ's (``listenPort``, ``kvConfigPath``, ``rocketmqHome``, ``orderMessageEnable``,
…), so an existing ``namesrv.conf`` works. Keys rmq adds are named in the same style:
``bindAddress`` (interface to listen on), ``scanNotActiveBrokerInterval`` and
``brokerChannelExpiredTime`` (milliseconds; 10 s and 120 s are RocketMQ 4.x's fixed values),
``maxFrameSize`` (bytes). ``serverChannelMaxIdleTimeSeconds`` (120 s) is Java's
``NettyServerConfig`` key: connections idle that long are closed.
"""

from __future__ import annotations

import os

import attrs

from rmq.common.config import load_config

__all__ = ["NamesrvConfig", "load_namesrv_config", "CONFIG_BLACK_LIST_DEFAULT"]

#: Keys UPDATE_NAMESRV_CONFIG refuses (per NamesrvConfig.configBlackList).
CONFIG_BLACK_LIST_DEFAULT = "configBlackList;configStorePath;kvConfigPath;rocketmqHome"


def _port(value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port number (0-65535)")


def _positive(value: int) -> None:
    if value <= 0:
        raise ValueError("must be positive")


def _not_negative(value: int) -> None:
    if value < 0:
        raise ValueError("must not be negative")


def _default_home() -> str:
    return os.environ.get("ROCKETMQ_HOME", "")


def _default_kv_path() -> str:
    return os.path.join(os.path.expanduser("~"), "namesrv", "kvConfig.json")


@attrs.frozen
class NamesrvConfig:
    """Everything a NameServer process is configured with (frozen; updates make a copy)."""

    rocketmq_home: str = attrs.field(factory=_default_home, metadata={"key": "rocketmqHome"})
    kv_config_path: str = attrs.field(factory=_default_kv_path, metadata={"key": "kvConfigPath"})
    #: Where UPDATE_NAMESRV_CONFIG persists the running config; empty: not persisted.
    config_store_path: str = attrs.field(default="", metadata={"key": "configStorePath"})
    product_env_name: str = attrs.field(default="center", metadata={"key": "productEnvName"})
    cluster_test: bool = attrs.field(default=False, metadata={"key": "clusterTest"})
    order_message_enable: bool = attrs.field(default=False, metadata={"key": "orderMessageEnable"})
    config_black_list: str = attrs.field(
        default=CONFIG_BLACK_LIST_DEFAULT, metadata={"key": "configBlackList"}
    )
    listen_port: int = attrs.field(default=9876, metadata={"key": "listenPort", "check": _port})
    bind_address: str = attrs.field(default="0.0.0.0", metadata={"key": "bindAddress"})
    scan_not_active_broker_interval_ms: int = attrs.field(
        default=10_000, metadata={"key": "scanNotActiveBrokerInterval", "check": _positive}
    )
    broker_channel_expired_time_ms: int = attrs.field(
        default=120_000, metadata={"key": "brokerChannelExpiredTime", "check": _positive}
    )
    max_frame_size: int = attrs.field(
        default=16 * 1024 * 1024, metadata={"key": "maxFrameSize", "check": _positive}
    )
    #: Close a connection without any read or write for this many seconds; 0 = never (Java's
    #: ``NettyServerConfig.serverChannelMaxIdleTimeSeconds``).
    server_channel_max_idle_time_s: int = attrs.field(
        default=120, metadata={"key": "serverChannelMaxIdleTimeSeconds", "check": _not_negative}
    )

    @property
    def listen(self) -> str:
        """The server endpoint string, e.g. ``tcp:9876:interface=0.0.0.0``."""
        return f"tcp:{self.listen_port}:interface={self.bind_address}"

    @property
    def idle_timeout_s(self) -> float | None:
        """``serverChannelMaxIdleTimeSeconds`` for the remoting factory (None = never)."""
        return float(self.server_channel_max_idle_time_s) or None

    @property
    def black_list(self) -> frozenset[str]:
        """Keys UPDATE_NAMESRV_CONFIG must refuse."""
        return frozenset(k.strip() for k in self.config_black_list.split(";") if k.strip())


def load_namesrv_config(path: str | None, overrides: dict[str, str] | None = None) -> NamesrvConfig:
    """Load a NameServer config file (RocketMQ keys); ``UsageError`` names a bad key."""
    return load_config(NamesrvConfig, path, overrides or {})
