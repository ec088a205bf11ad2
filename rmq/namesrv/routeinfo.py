"""The NameServer's routing state (per RocketMQ's RouteInfoManager): pure state, no I/O.

Tables (protocol §4):

* ``topic_queue_table``: topic → {brokerName → QueueData}
* ``broker_addr_table``: brokerName → BrokerData {cluster, brokerName, {brokerId → addr}}
* ``cluster_addr_table``: cluster → brokerNames (insertion-ordered)
* ``broker_live_table``: brokerAddr → BrokerLiveInfo {last update, DataVersion, HA address,
  the remote address of the connection it registered on}
* ``filter_server_table``: brokerAddr → filter server addresses

Time comes from an injected ``IReactorTime``. Every method runs to completion on the reactor
thread, so there are no locks. ``generation`` grows whenever anything a route answer depends on
changes, so callers may cache encoded answers per generation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rmq.common.asyncutil import now_ms
from rmq.common.route import (
    MASTER_ID,
    PERM_READ,
    PERM_WRITE,
    BrokerData,
    ClusterInfo,
    DataVersion,
    QueueData,
    TopicRouteData,
    has_unit_flag,
    has_unit_sub_flag,
)

__all__ = [
    "BROKER_CHANNEL_EXPIRED_TIME_MS",
    "BrokerLiveInfo",
    "RegisterBrokerResult",
    "RouteInfoManager",
]

#: A broker not heard from for this long is dropped (per RouteInfoManager, 2 minutes).
BROKER_CHANNEL_EXPIRED_TIME_MS = 120_000


@attrs.define
class BrokerLiveInfo:
    """Liveness of one broker address (per BrokerLiveInfo).

    ``channel`` is the remote address (``ip:port``) of the connection the broker last registered
    on, so a closed connection can be mapped back to the broker; ``None`` when unknown.
    """

    last_update_ms: int
    data_version: DataVersion
    ha_server_addr: str
    channel: str | None = None


@attrs.frozen
class RegisterBrokerResult:
    """What REGISTER_BROKER answers (per RegisterBrokerResult): a slave learns its master."""

    ha_server_addr: str | None = None
    master_addr: str | None = None


class RouteInfoManager:
    """Brokers, clusters and topic queue data, with liveness (per RouteInfoManager)."""

    log = Logger()

    def __init__(
        self, clock: IReactorTime, broker_timeout_ms: int = BROKER_CHANNEL_EXPIRED_TIME_MS
    ) -> None:
        self._clock = clock
        self.broker_timeout_ms = broker_timeout_ms
        self.topic_queue_table: dict[str, dict[str, QueueData]] = {}
        self.broker_addr_table: dict[str, BrokerData] = {}
        self.cluster_addr_table: dict[str, dict[str, None]] = {}
        self.broker_live_table: dict[str, BrokerLiveInfo] = {}
        self.filter_server_table: dict[str, list[str]] = {}
        self.generation = 0

    def _changed(self) -> None:
        self.generation += 1

    # -----------------------------------------------------------------------------------------
    # Registration

    def register_broker(
        self,
        cluster_name: str,
        broker_addr: str,
        broker_name: str,
        broker_id: int,
        ha_server_addr: str,
        data_version: DataVersion,
        topic_config_table: Mapping[str, Mapping[str, Any]] | None,
        filter_server_list: list[str] | None,
        channel: str | None = None,
    ) -> RegisterBrokerResult:
        """Record a broker's registration (per RouteInfoManager.registerBroker).

        ``topic_config_table`` maps topic → TopicConfig in Java's JSON shape; it updates queue
        data only for a master whose DataVersion changed or that registers for the first time.
        Topics that vanished from the broker are not removed. A slave gets its master's address
        and HA address when the master is registered and alive.
        """
        names = self.cluster_addr_table.setdefault(cluster_name, {})
        if broker_name not in names:
            names[broker_name] = None
            self._changed()

        register_first = False
        broker_data = self.broker_addr_table.get(broker_name)
        if broker_data is None:
            register_first = True
            broker_data = BrokerData(cluster_name, broker_name, {})
            self.broker_addr_table[broker_name] = broker_data
            self._changed()
        addrs = broker_data.broker_addrs
        # A slave switching to master (or back) re-registers the same address under a new id.
        for other_id in [i for i, a in addrs.items() if a == broker_addr and i != broker_id]:
            del addrs[other_id]
            self._changed()
        old_addr = addrs.get(broker_id)
        if old_addr != broker_addr:
            addrs[broker_id] = broker_addr
            self._changed()
        register_first = register_first or old_addr is None

        if topic_config_table is not None and broker_id == MASTER_ID:
            if register_first or self.is_broker_topic_config_changed(broker_addr, data_version):
                for name, tc in topic_config_table.items():
                    self._create_and_update_queue_data(broker_name, name, tc)

        previous = self.broker_live_table.get(broker_addr)
        self.broker_live_table[broker_addr] = BrokerLiveInfo(
            last_update_ms=now_ms(self._clock),
            data_version=data_version,
            ha_server_addr=ha_server_addr,
            channel=channel,
        )
        if previous is None:
            self.log.info(
                "New broker {broker_name} ({broker_id}) registered at {broker_addr}, HA {ha}",
                broker_name=broker_name,
                broker_id=broker_id,
                broker_addr=broker_addr,
                ha=ha_server_addr,
            )

        if filter_server_list is not None:
            if filter_server_list:
                if self.filter_server_table.get(broker_addr) != filter_server_list:
                    self.filter_server_table[broker_addr] = list(filter_server_list)
                    self._changed()
            elif self.filter_server_table.pop(broker_addr, None) is not None:
                self._changed()

        if broker_id != MASTER_ID:
            master_addr = addrs.get(MASTER_ID)
            if master_addr is not None:
                master_live = self.broker_live_table.get(master_addr)
                if master_live is not None:
                    return RegisterBrokerResult(master_live.ha_server_addr, master_addr)
        return RegisterBrokerResult()

    def _create_and_update_queue_data(
        self, broker_name: str, table_key: str, tc: Mapping[str, Any]
    ) -> None:
        topic = str(tc.get("topicName") or table_key)
        queue_data = QueueData(
            broker_name=broker_name,
            read_queue_nums=int(tc.get("readQueueNums", 0)),
            write_queue_nums=int(tc.get("writeQueueNums", 0)),
            perm=int(tc.get("perm", 0)),
            topic_sys_flag=int(tc.get("topicSysFlag", 0)),
        )
        queues = self.topic_queue_table.get(topic)
        if queues is None:
            self.topic_queue_table[topic] = {broker_name: queue_data}
            self._changed()
            return
        old = queues.get(broker_name)
        if old != queue_data:
            queues[broker_name] = queue_data
            self._changed()

    def is_broker_topic_config_changed(self, broker_addr: str, data_version: DataVersion) -> bool:
        """True when no DataVersion is stored for ``broker_addr`` or it differs from this one."""
        stored = self.query_broker_topic_config(broker_addr)
        return stored is None or stored != data_version

    def query_broker_topic_config(self, broker_addr: str) -> DataVersion | None:
        """The DataVersion the broker at ``broker_addr`` last registered with, if it is live."""
        live = self.broker_live_table.get(broker_addr)
        return None if live is None else live.data_version

    def update_broker_info_update_timestamp(self, broker_addr: str) -> None:
        """Mark the broker at ``broker_addr`` as alive now (QUERY_DATA_VERSION with no change)."""
        live = self.broker_live_table.get(broker_addr)
        if live is not None:
            live.last_update_ms = now_ms(self._clock)

    def unregister_broker(
        self, cluster_name: str, broker_addr: str, broker_name: str, broker_id: int
    ) -> None:
        """Forget one broker address (per RouteInfoManager.unregisterBroker, clean shutdown)."""
        live = self.broker_live_table.pop(broker_addr, None)
        self.log.info(
            "Broker {broker_name} ({broker_id}) at {broker_addr} unregistered{suffix}",
            broker_name=broker_name,
            broker_id=broker_id,
            broker_addr=broker_addr,
            suffix="" if live is not None else " (was not live)",
        )
        if self.filter_server_table.pop(broker_addr, None) is not None:
            self._changed()
        remove_broker_name = False
        broker_data = self.broker_addr_table.get(broker_name)
        if broker_data is not None:
            if broker_data.broker_addrs.pop(broker_id, None) is not None:
                self._changed()
            if not broker_data.broker_addrs:
                del self.broker_addr_table[broker_name]
                remove_broker_name = True
                self._changed()
        if remove_broker_name:
            names = self.cluster_addr_table.get(cluster_name)
            if names is not None:
                names.pop(broker_name, None)
                if not names:
                    del self.cluster_addr_table[cluster_name]
            self._remove_topic_by_broker_name(broker_name)

    def _remove_topic_by_broker_name(self, broker_name: str) -> None:
        """Drop ``broker_name``'s queue data from every topic, and the topics left without one.

        One log event per broker, not per topic: with 100,000 topics a per-topic event costs
        seconds under an active observer.
        """
        touched = removed = 0
        for topic in list(self.topic_queue_table):
            queues = self.topic_queue_table[topic]
            if queues.pop(broker_name, None) is not None:
                touched += 1
                if not queues:
                    del self.topic_queue_table[topic]
                    removed += 1
        if touched:
            self._changed()
        if removed:
            self.log.debug(
                "Broker {broker_name} gone: {removed} topics removed (no broker left)",
                broker_name=broker_name,
                removed=removed,
            )

    # -----------------------------------------------------------------------------------------
    # Liveness

    def scan_not_active_broker(self) -> list[tuple[str, BrokerLiveInfo]]:
        """Drop every broker silent for longer than the timeout; return what was dropped.

        The caller closes the dropped brokers' connections (``BrokerLiveInfo.channel``).
        """
        now = now_ms(self._clock)
        expired = [
            (addr, live)
            for addr, live in self.broker_live_table.items()
            if live.last_update_ms + self.broker_timeout_ms < now
        ]
        for addr, live in expired:
            self.log.warn(
                "Broker {broker_addr} expired: silent for {silent_ms} ms",
                broker_addr=addr,
                silent_ms=now - live.last_update_ms,
            )
            self.broker_live_table.pop(addr, None)
            self._destroy_broker_addr(addr)
        return expired

    def on_channel_destroy(self, remote_addr: str) -> list[str]:
        """A connection closed: drop the brokers registered on it (per onChannelDestroy).

        Brokers are found by the connection's remote address recorded at registration; when none
        matches, ``remote_addr`` itself is tried as a broker address (as Java does). Returns the
        broker addresses dropped.
        """
        found = [
            addr for addr, live in self.broker_live_table.items() if live.channel == remote_addr
        ]
        if not found and remote_addr in self.broker_live_table:
            found = [remote_addr]
        for addr in found:
            self.log.info(
                "Connection {remote} closed: broker {broker_addr} removed",
                remote=remote_addr,
                broker_addr=addr,
            )
            self.broker_live_table.pop(addr, None)
            self._destroy_broker_addr(addr)
        return found

    def _destroy_broker_addr(self, broker_addr: str) -> None:
        if self.filter_server_table.pop(broker_addr, None) is not None:
            self._changed()
        for broker_name in list(self.broker_addr_table):
            broker_data = self.broker_addr_table[broker_name]
            ids = [i for i, a in broker_data.broker_addrs.items() if a == broker_addr]
            if not ids:
                continue
            for i in ids:
                del broker_data.broker_addrs[i]
            self._changed()
            if not broker_data.broker_addrs:
                del self.broker_addr_table[broker_name]
                for cluster in list(self.cluster_addr_table):
                    names = self.cluster_addr_table[cluster]
                    if broker_name in names:
                        del names[broker_name]
                        if not names:
                            del self.cluster_addr_table[cluster]
                self._remove_topic_by_broker_name(broker_name)

    # -----------------------------------------------------------------------------------------
    # Queries

    def pickup_topic_route_data(self, topic: str) -> TopicRouteData | None:
        """The route of ``topic``, or ``None`` when it has no queue data or no registered broker.

        Broker data are copies; filter servers are included for the brokers' addresses that have
        any (per RouteInfoManager.pickupTopicRouteData).
        """
        queues = self.topic_queue_table.get(topic)
        if not queues:
            return None
        route = TopicRouteData(queue_datas=[attrs.evolve(q) for q in queues.values()])
        for broker_name in queues:
            broker_data = self.broker_addr_table.get(broker_name)
            if broker_data is None:
                continue
            clone = broker_data.copy()
            route.broker_datas.append(clone)
            if self.filter_server_table:
                for addr in clone.broker_addrs.values():
                    servers = self.filter_server_table.get(addr)
                    if servers is not None:
                        route.filter_server_table[addr] = list(servers)
        if not route.broker_datas:
            return None
        return route

    def get_all_cluster_info(self) -> ClusterInfo:
        """Every broker and cluster (GET_BROKER_CLUSTER_INFO)."""
        return ClusterInfo(
            broker_addr_table={k: v.copy() for k, v in self.broker_addr_table.items()},
            cluster_addr_table={k: list(v) for k, v in self.cluster_addr_table.items()},
        )

    def get_all_topic_list(self) -> list[str]:
        """Every topic with queue data."""
        return list(self.topic_queue_table)

    def get_topics_by_cluster(self, cluster: str) -> list[str]:
        """Topics with queue data on some broker of ``cluster`` (empty for an unknown cluster)."""
        names = self.cluster_addr_table.get(cluster)
        if not names:
            return []
        return [
            topic
            for topic, queues in self.topic_queue_table.items()
            if any(name in queues for name in names)
        ]

    def get_system_topic_list(self) -> tuple[list[str], str | None]:
        """Cluster names and broker names (they are topics too), and some broker's address."""
        topics: dict[str, None] = {}
        for cluster, names in self.cluster_addr_table.items():
            topics[cluster] = None
            for name in names:
                topics[name] = None
        broker_addr: str | None = None
        for broker_data in self.broker_addr_table.values():
            if broker_data.broker_addrs:
                broker_addr = next(iter(broker_data.broker_addrs.values()))
                break
        return list(topics), broker_addr

    def _topics_where(self, predicate: Any) -> list[str]:
        result = []
        for topic, queues in self.topic_queue_table.items():
            first = next(iter(queues.values()), None)
            if first is not None and predicate(first.topic_sys_flag):
                result.append(topic)
        return result

    def get_unit_topics(self) -> list[str]:
        """Topics whose queue data carry the unit flag (GET_UNIT_TOPIC_LIST)."""
        return self._topics_where(has_unit_flag)

    def get_has_unit_sub_topic_list(self) -> list[str]:
        """Topics with a unit subscription (GET_HAS_UNIT_SUB_TOPIC_LIST)."""
        return self._topics_where(has_unit_sub_flag)

    def get_has_unit_sub_un_unit_topic_list(self) -> list[str]:
        """Non-unit topics with a unit subscription (GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST)."""
        return self._topics_where(lambda f: not has_unit_flag(f) and has_unit_sub_flag(f))

    # -----------------------------------------------------------------------------------------
    # Administration

    def delete_topic(self, topic: str, cluster_name: str | None = None) -> None:
        """Drop a topic, or with ``cluster_name`` only its queue data on that cluster's brokers."""
        if not cluster_name:
            if self.topic_queue_table.pop(topic, None) is not None:
                self._changed()
            return
        names = self.cluster_addr_table.get(cluster_name)
        queues = self.topic_queue_table.get(topic)
        if not names or queues is None:
            return
        for name in names:
            if queues.pop(name, None) is not None:
                self._changed()
        if not queues:
            del self.topic_queue_table[topic]

    def wipe_write_perm_of_broker(self, broker_name: str) -> int:
        """Clear PERM_WRITE on every topic of ``broker_name``; return how many topics it touched."""
        return self._operate_write_perm(broker_name, wipe=True)

    def add_write_perm_of_broker(self, broker_name: str) -> int:
        """Set every topic of ``broker_name`` to READ|WRITE; return how many topics it touched."""
        return self._operate_write_perm(broker_name, wipe=False)

    def _operate_write_perm(self, broker_name: str, wipe: bool) -> int:
        count = 0
        for queues in self.topic_queue_table.values():
            queue_data = queues.get(broker_name)
            if queue_data is None:
                continue
            if wipe:
                queue_data.perm &= ~PERM_WRITE
            else:
                queue_data.perm = PERM_READ | PERM_WRITE
            count += 1
        if count:
            self._changed()
        return count

    def broker_addrs_of_channel(self, remote_addr: str) -> Iterable[str]:
        """Broker addresses registered over the connection from ``remote_addr``."""
        return [a for a, live in self.broker_live_table.items() if live.channel == remote_addr]
