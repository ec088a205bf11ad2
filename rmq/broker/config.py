"""Broker configuration: RocketMQ ``broker.conf`` keys loaded into a frozen attrs class.

Java counterparts: ``BrokerConfig`` (+ the ``NettyServerConfig.listenPort``). Store keys in the same
file (``storePathRootDir``, ``flushDiskType``, ``mappedFileSizeCommitLog``, …) are forwarded to the
store's :class:`rmq.store.config.MessageStoreConfig`; a key known to neither is logged by name, a
bad value raises ``UsageError`` naming the key (:func:`load_broker_config`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs
from twisted.logger import Logger
from twisted.python.usage import UsageError

from rmq.common.config import apply_properties, config_keys, read_properties_file
from rmq.store.config import MessageStoreConfig

_log = Logger(namespace="rmq.broker.config")

ASYNC_MASTER = "ASYNC_MASTER"
SYNC_MASTER = "SYNC_MASTER"
SLAVE = "SLAVE"


def _key(name: str) -> dict[str, str]:
    return {"key": name}


def _role(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in (ASYNC_MASTER, SYNC_MASTER, SLAVE):
        raise ValueError(f"brokerRole must be ASYNC_MASTER, SYNC_MASTER or SLAVE, not {value!r}")


def _positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.metadata.get('key', attribute.name)} must be > 0")


def _not_negative(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.metadata.get('key', attribute.name)} must be >= 0")


@attrs.frozen
class BrokerConfig:
    """Broker settings with RocketMQ 4.9.x defaults (times in ms unless the name says otherwise)."""

    cluster_name: str = attrs.field(default="DefaultCluster", metadata=_key("brokerClusterName"))
    broker_name: str = attrs.field(default="broker-a", metadata=_key("brokerName"))
    broker_id: int = attrs.field(default=0, metadata=_key("brokerId"))
    namesrv_addr: str = attrs.field(default="", metadata=_key("namesrvAddr"))
    listen_port: int = attrs.field(default=10911, metadata=_key("listenPort"))
    #: Interface to listen on (not a RocketMQ key; Java always binds every interface).
    listen_interface: str = attrs.field(default="0.0.0.0", metadata=_key("listenInterface"))
    broker_ip1: str = attrs.field(default="127.0.0.1", metadata=_key("brokerIP1"))
    broker_ip2: str = attrs.field(default="", metadata=_key("brokerIP2"))
    ha_listen_port: int = attrs.field(default=0, metadata=_key("haListenPort"))
    store_path_root_dir: str = attrs.field(
        default=os.path.join(os.path.expanduser("~"), "store"), metadata=_key("storePathRootDir")
    )
    flush_disk_type: str = attrs.field(default="ASYNC_FLUSH", metadata=_key("flushDiskType"))
    broker_role: str = attrs.field(
        default=ASYNC_MASTER, validator=_role, metadata=_key("brokerRole")
    )
    broker_permission: int = attrs.field(default=6, metadata=_key("brokerPermission"))
    auto_create_topic_enable: bool = attrs.field(
        default=True, metadata=_key("autoCreateTopicEnable")
    )
    auto_create_subscription_group: bool = attrs.field(
        default=True, metadata=_key("autoCreateSubscriptionGroup")
    )
    default_topic_queue_nums: int = attrs.field(
        default=8, validator=_positive, metadata=_key("defaultTopicQueueNums")
    )
    cluster_topic_enable: bool = attrs.field(default=True, metadata=_key("clusterTopicEnable"))
    broker_topic_enable: bool = attrs.field(default=True, metadata=_key("brokerTopicEnable"))
    trace_topic_enable: bool = attrs.field(default=False, metadata=_key("traceTopicEnable"))
    msg_trace_topic_name: str = attrs.field(
        default="RMQ_SYS_TRACE_TOPIC", metadata=_key("msgTraceTopicName")
    )
    file_reserved_time_hours: int = attrs.field(default=72, metadata=_key("fileReservedTime"))
    delete_when: str = attrs.field(default="04", metadata=_key("deleteWhen"))
    max_message_size: int = attrs.field(
        default=4 * 1024 * 1024, validator=_positive, metadata=_key("maxMessageSize")
    )
    region_id: str = attrs.field(default="DefaultRegion", metadata=_key("regionId"))
    trace_on: bool = attrs.field(default=True, metadata=_key("traceOn"))
    reject_transaction_message: bool = attrs.field(
        default=False, metadata=_key("rejectTransactionMessage")
    )
    #: Age (ms) of a half message before its first transaction check-back.
    transaction_timeout_ms: int = attrs.field(
        default=6000, validator=_positive, metadata=_key("transactionTimeOut")
    )
    #: Time (ms) between two check-backs of the same half message.
    transaction_check_interval_ms: int = attrs.field(
        default=60_000, validator=_positive, metadata=_key("transactionCheckInterval")
    )
    #: Check-backs before a half message is discarded.
    transaction_check_max: int = attrs.field(default=15, metadata=_key("transactionCheckMax"))
    #: Bound on puts waiting for the store; beyond it sends get SYSTEM_BUSY (Java's send queue).
    send_thread_pool_queue_capacity: int = attrs.field(
        default=10000, validator=_positive, metadata=_key("sendThreadPoolQueueCapacity")
    )
    register_name_server_period_ms: int = attrs.field(
        default=30_000, metadata=_key("registerNameServerPeriod")
    )
    register_broker_timeout_ms: int = attrs.field(
        default=6000, metadata=_key("registerBrokerTimeoutMills")
    )
    #: Java defaults to true (full registration every period); rmq asks QUERY_DATA_VERSION first.
    force_register: bool = attrs.field(default=False, metadata=_key("forceRegister"))
    compressed_register: bool = attrs.field(default=False, metadata=_key("compressedRegister"))
    #: Registration bodies larger than this are sent compressed even without compressedRegister.
    compress_register_over_bytes: int = attrs.field(
        default=1024 * 1024, metadata=_key("compressRegisterOverBytes")
    )
    flush_consumer_offset_interval_ms: int = attrs.field(
        default=5000, metadata=_key("flushConsumerOffsetInterval")
    )
    long_polling_enable: bool = attrs.field(default=True, metadata=_key("longPollingEnable"))
    short_polling_time_ms: int = attrs.field(default=1000, metadata=_key("shortPollingTimeMills"))
    notify_consumer_ids_changed_enable: bool = attrs.field(
        default=True, metadata=_key("notifyConsumerIdsChangedEnable")
    )
    channel_expired_timeout_ms: int = attrs.field(
        default=120_000, metadata=_key("channelExpiredTimeout")
    )
    client_scan_interval_ms: int = attrs.field(default=10_000, metadata=_key("clientScanInterval"))
    default_query_max_num: int = attrs.field(default=32, metadata=_key("defaultQueryMaxNum"))
    max_msgs_num_batch: int = attrs.field(default=64, metadata=_key("maxMsgsNumBatch"))
    slave_read_enable: bool = attrs.field(default=False, metadata=_key("slaveReadEnable"))
    enable_property_filter: bool = attrs.field(default=False, metadata=_key("enablePropertyFilter"))
    #: Java's ``filterDataCleanTimeSpan``: forget a dead SQL92 filter after this long.
    filter_data_clean_time_span_ms: int = attrs.field(
        default=24 * 3600 * 1000, metadata=_key("filterDataCleanTimeSpan")
    )
    #: Error rate (%) and expected consumers of the bloom filter in ``consumerFilter.json``.
    max_error_rate_of_bloom_filter: int = attrs.field(
        default=20, metadata=_key("maxErrorRateOfBloomFilter")
    )
    expect_consumer_num_use_filter: int = attrs.field(
        default=32, metadata=_key("expectConsumerNumUseFilter")
    )
    #: Store replies (request/reply) in ``<cluster>_REPLY_TOPIC`` besides pushing them.
    store_reply_message_enable: bool = attrs.field(
        default=True, metadata=_key("storeReplyMessageEnable")
    )
    max_frame_size: int = attrs.field(default=16 * 1024 * 1024, metadata=_key("maxFrameSize"))
    #: Close a connection without any read or write for this many seconds; 0 = never (Java's
    #: ``NettyServerConfig.serverChannelMaxIdleTimeSeconds``). A held pull counts as activity.
    server_channel_max_idle_time_s: int = attrs.field(
        default=120, validator=_not_negative, metadata=_key("serverChannelMaxIdleTimeSeconds")
    )
    #: Serve the Prometheus page ``GET /metrics`` (docs/metrics.md) on this port of
    #: ``listenInterface``; 0 = off (rmq key).
    metrics_port: int = attrs.field(
        default=0, validator=_not_negative, metadata=_key("metricsPort")
    )
    # -- HA (master/slave replication, rmq.broker.ha; MessageStoreConfig keys in Java) --------
    #: A slave's master HA address ``ip:port``; empty = learn it from REGISTER_BROKER.
    ha_master_address: str = attrs.field(default="", metadata=_key("haMasterAddress"))
    ha_send_heartbeat_interval_ms: int = attrs.field(
        default=5000, validator=_positive, metadata=_key("haSendHeartbeatInterval")
    )
    ha_housekeeping_interval_ms: int = attrs.field(
        default=20_000, validator=_positive, metadata=_key("haHousekeepingInterval")
    )
    ha_transfer_batch_size: int = attrs.field(
        default=32 * 1024, validator=_positive, metadata=_key("haTransferBatchSize")
    )
    ha_slave_fallbehind_max: int = attrs.field(
        default=256 * 1024 * 1024, validator=_positive, metadata=_key("haSlaveFallbehindMax")
    )
    #: SYNC_MASTER: time a send waits for a slave before FLUSH_SLAVE_TIMEOUT.
    slave_timeout_ms: int = attrs.field(
        default=3000, validator=_positive, metadata=_key("slaveTimeout")
    )

    @property
    def is_master(self) -> bool:
        """True unless brokerRole is SLAVE."""
        return self.broker_role != SLAVE

    @property
    def broker_addr(self) -> str:
        """``brokerIP1:listenPort``: the address clients and NameServers are given."""
        return f"{self.broker_ip1}:{self.listen_port}"

    @property
    def ha_server_addr(self) -> str:
        """``brokerIP2:haListenPort`` (defaults: brokerIP1, listenPort + 1)."""
        port = self.ha_listen_port or self.listen_port + 1
        return f"{self.broker_ip2 or self.broker_ip1}:{port}"

    @property
    def ha_listen_endpoint(self) -> str:
        """The server endpoint description for the HA port (haListenPort or listenPort + 1;
        ephemeral when both are 0)."""
        port = self.ha_listen_port or (self.listen_port + 1 if self.listen_port else 0)
        return f"tcp:{port}:interface={self.listen_interface}"

    @property
    def listen_endpoint(self) -> str:
        """The server endpoint description for ``listenPort``/``listenInterface``."""
        return f"tcp:{self.listen_port}:interface={self.listen_interface}"

    @property
    def metrics_endpoint(self) -> str | None:
        """The Prometheus page's server endpoint description; None when ``metricsPort`` is 0."""
        if not self.metrics_port:
            return None
        return f"tcp:{self.metrics_port}:interface={self.listen_interface}"

    @property
    def idle_timeout_s(self) -> float | None:
        """``serverChannelMaxIdleTimeSeconds`` for the remoting factory (None = never)."""
        return float(self.server_channel_max_idle_time_s) or None

    @property
    def namesrv_addrs(self) -> list[str]:
        """``namesrvAddr`` split on ``;`` (empty entries dropped)."""
        return [a.strip() for a in self.namesrv_addr.split(";") if a.strip()]

    @property
    def config_dir(self) -> str:
        """``<storePathRootDir>/config``."""
        return os.path.join(self.store_path_root_dir, "config")


def load_broker_config(
    path: str | None = None, overrides: Mapping[str, str] | None = None
) -> tuple[BrokerConfig, MessageStoreConfig]:
    """Read a ``broker.conf`` (then ``overrides``) into the broker and the store configs.

    Keys known to both (``storePathRootDir``, ``flushDiskType``, ``fileReservedTime``,
    ``deleteWhen``, ``maxMessageSize``) go to both. Raises ``UsageError`` naming the key for a bad
    value or an unreadable file; unknown keys are logged.
    """
    props = read_properties_file(path) if path is not None else {}
    if overrides:
        props.update(overrides)
    return configs_from_properties(props, path or "defaults")


def configs_from_properties(
    props: Mapping[str, str], source: str = "properties"
) -> tuple[BrokerConfig, MessageStoreConfig]:
    """Split ``props`` between BrokerConfig and MessageStoreConfig (see load_broker_config)."""
    broker_keys = set(config_keys(BrokerConfig))
    store_keys = set(config_keys(MessageStoreConfig))
    for key in props:
        if key not in broker_keys and key not in store_keys:
            _log.warn("Unknown config key {key} in {source} ignored", key=key, source=source)
    try:
        broker, _ = apply_properties(
            BrokerConfig(), {k: v for k, v in props.items() if k in broker_keys}
        )
        store, _ = apply_properties(
            MessageStoreConfig(), {k: v for k, v in props.items() if k in store_keys}
        )
    except ValueError as e:
        raise UsageError(f"bad configuration ({source}): {e}") from e
    if broker.broker_role == SLAVE and broker.broker_id <= 0:
        raise UsageError(f"bad configuration ({source}): brokerId of a SLAVE must be > 0")
    if "storePathRootDir" not in props:
        store = attrs.evolve(store, store_path_root_dir=broker.store_path_root_dir)
    return broker, store
