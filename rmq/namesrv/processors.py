"""NameServer request processors (per RocketMQ's DefaultRequestProcessor): wire ⇄ domain.

Each processor decodes the custom header and body of the commands it handles, calls
:class:`~rmq.namesrv.routeinfo.RouteInfoManager` or
:class:`~rmq.namesrv.kvconfig.KVConfigManager`, and encodes the answer the way the Java
NameServer 4.9.7 does (protocol §4; checked against the captured vectors).

``namesrv_dispatcher`` wires them into one :class:`~rmq.remoting.dispatch.Dispatcher`. Unknown
codes are answered REQUEST_CODE_NOT_SUPPORTED (DESIGN "Rules for bad input"); the Java
NameServer sends nothing at all, and no client relies on either (protocol §14.8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.usage import UsageError
from zope.interface import implementer

from rmq.common import fastjson
from rmq.common.config import (
    apply_properties,
    config_to_properties,
    format_properties,
    parse_properties,
)
from rmq.common.errors import RMQError
from rmq.common.route import (
    DataVersion,
    RegisterBrokerBody,
    body_crc32,
    kv_table_json,
    topic_list_json,
)
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.kvconfig import NAMESPACE_ORDER_TOPIC_CONFIG, KVConfigManager
from rmq.namesrv.routeinfo import RouteInfoManager
from rmq.remoting.codes import RequestCode, ResponseCode, Version
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.dispatch import Dispatcher
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor

__all__ = [
    "NamesrvConfigHolder",
    "BrokerRegistrationProcessor",
    "RouteQueryProcessor",
    "KVConfigProcessor",
    "NamesrvConfigProcessor",
    "namesrv_dispatcher",
    "FAQ_APPLY_TOPIC",
]

#: Java appends this FAQ hint to "no route" remarks (per FAQUrl.suggestTodo(APPLY_TOPIC_URL)).
FAQ_APPLY_TOPIC = "\nSee http://rocketmq.apache.org/docs/faq/ for further details."

Handler = Callable[[IRemotingConnection, RemotingCommand], Any]


@attrs.define
class NamesrvConfigHolder:
    """The running NameServer config; UPDATE_NAMESRV_CONFIG replaces ``current``.

    ``persist(path, data)`` stores the updated config at ``configStorePath`` when one is set.
    """

    current: NamesrvConfig
    persist: Callable[[str, bytes], Deferred[None] | None] | None = None


class _TableProcessor:
    """Base: a ``code → handler`` table; subclasses fill ``handlers``."""

    handlers: dict[int, Handler]

    def process_request(self, connection: IRemotingConnection, request: RemotingCommand) -> Any:
        """Run the handler registered for the request's code."""
        return self.handlers[request.code](connection, request)

    def codes(self) -> list[int]:
        """The request codes this processor handles."""
        return list(self.handlers)


@implementer(IRequestProcessor)
class BrokerRegistrationProcessor(_TableProcessor):
    """REGISTER_BROKER, UNREGISTER_BROKER, QUERY_DATA_VERSION (broker → NameServer)."""

    log = Logger()

    def __init__(self, routes: RouteInfoManager, kv: KVConfigManager) -> None:
        self.routes = routes
        self.kv = kv
        self.handlers = {
            RequestCode.REGISTER_BROKER: self.register_broker,
            RequestCode.UNREGISTER_BROKER: self.unregister_broker,
            RequestCode.QUERY_DATA_VERSION: self.query_data_version,
        }

    def register_broker(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Check the body CRC, decode either body form, register, answer master/HA + KV table."""
        broker_name = request.ext_str("brokerName")
        broker_addr = request.ext_str("brokerAddr")
        cluster_name = request.ext_str("clusterName")
        ha_server_addr = request.ext_str("haServerAddr")
        broker_id = request.ext_int("brokerId")
        compressed = request.ext_bool("compressed", False)
        crc = request.ext_int("bodyCrc32", 0)
        if crc != 0 and body_crc32(request.body) != crc:
            self.log.warn(
                "Register from {broker_addr}: body CRC32 does not match {crc}",
                broker_addr=broker_addr,
                crc=crc,
            )
            return new_response(request, ResponseCode.SYSTEM_ERROR, "crc32 not match")
        filter_servers: list[str] | None
        try:
            if request.version >= Version.V3_0_11:
                if request.body:
                    body = RegisterBrokerBody.decode(request.body, compressed)
                else:
                    body = RegisterBrokerBody(DataVersion(0, 0))
                filter_servers = body.filter_server_list
            else:
                body = (
                    RegisterBrokerBody.from_wrapper(fastjson.loads(request.body))
                    if request.body
                    else RegisterBrokerBody(DataVersion(0, 0))
                )
                filter_servers = None
        except ValueError as e:
            raise RMQError(f"bad REGISTER_BROKER body: {e}", ResponseCode.SYSTEM_ERROR) from e
        result = self.routes.register_broker(
            cluster_name,
            broker_addr,
            broker_name,
            broker_id,
            ha_server_addr,
            body.data_version,
            body.topic_config_table,
            filter_servers,
            connection.remote_address,
        )
        table = self.kv.get_kv_list_by_namespace(NAMESPACE_ORDER_TOPIC_CONFIG)
        return new_response(
            request,
            ext_fields={"haServerAddr": result.ha_server_addr, "masterAddr": result.master_addr},
            body=b"" if table is None else kv_table_json(table),
        )

    def unregister_broker(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Forget the broker address (clean broker shutdown)."""
        self.routes.unregister_broker(
            request.ext_str("clusterName"),
            request.ext_str("brokerAddr"),
            request.ext_str("brokerName"),
            request.ext_int("brokerId"),
        )
        return new_response(request)

    def query_data_version(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Tell the broker whether its DataVersion changed; refresh its liveness if not."""
        broker_addr = request.ext_str("brokerAddr")
        try:
            data_version = DataVersion.from_json(request.body)
        except ValueError as e:
            raise RMQError(f"bad DataVersion body: {e}", ResponseCode.SYSTEM_ERROR) from e
        changed = self.routes.is_broker_topic_config_changed(broker_addr, data_version)
        if not changed:
            self.routes.update_broker_info_update_timestamp(broker_addr)
        stored = self.routes.query_broker_topic_config(broker_addr)
        return new_response(
            request,
            ext_fields={"changed": changed},
            body=b"" if stored is None else stored.to_json(),
        )


@implementer(IRequestProcessor)
class RouteQueryProcessor(_TableProcessor):
    """Routes, cluster info, topic lists and topic/permission administration.

    Encoded route bodies are cached per (topic, JSON style) until routes, KV store or config
    change, so the hot GET_ROUTEINFO_BY_TOPIC path is a dict lookup.
    """

    log = Logger()

    def __init__(
        self, routes: RouteInfoManager, kv: KVConfigManager, config: NamesrvConfigHolder
    ) -> None:
        self.routes = routes
        self.kv = kv
        self.config = config
        self._cache: dict[tuple[str, bool], bytes] = {}
        self._cache_key: tuple[int, int, NamesrvConfig] | None = None
        self.handlers = {
            RequestCode.GET_ROUTEINFO_BY_TOPIC: self.get_route_info_by_topic,
            RequestCode.GET_BROKER_CLUSTER_INFO: self.get_broker_cluster_info,
            RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: self.get_all_topic_list,
            RequestCode.GET_TOPICS_BY_CLUSTER: self.get_topics_by_cluster,
            RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS: self.get_system_topic_list,
            RequestCode.GET_UNIT_TOPIC_LIST: self.get_unit_topic_list,
            RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST: self.get_has_unit_sub_topic_list,
            RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST: self.get_has_unit_sub_un_unit_topics,
            RequestCode.DELETE_TOPIC_IN_NAMESRV: self.delete_topic_in_namesrv,
            RequestCode.WIPE_WRITE_PERM_OF_BROKER: self.wipe_write_perm_of_broker,
            RequestCode.ADD_WRITE_PERM_OF_BROKER: self.add_write_perm_of_broker,
        }

    def route_body(self, topic: str, standard: bool) -> bytes | None:
        """The encoded route of ``topic`` in the given JSON style, or ``None`` if it has none."""
        key = (self.routes.generation, self.kv.generation, self.config.current)
        if key != self._cache_key:
            self._cache.clear()
            self._cache_key = key
        cached = self._cache.get((topic, standard))
        if cached is not None:
            return cached
        route = self.routes.pickup_topic_route_data(topic)
        if route is None:
            return None
        if self.config.current.order_message_enable:
            route.order_topic_conf = self.kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, topic)
        body = route.to_json(standard)
        self._cache[(topic, standard)] = body
        return body

    def get_route_info_by_topic(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """The topic's route, standard JSON for clients ≥ V4_9_4, fastjson style otherwise."""
        topic = request.ext_str("topic")
        standard = request.version >= Version.V4_9_4 or request.ext_bool(
            "acceptStandardJsonOnly", False
        )
        body = self.route_body(topic, standard)
        if body is None:
            return new_response(
                request,
                ResponseCode.TOPIC_NOT_EXIST,
                f"No topic route info in name server for the topic: {topic}{FAQ_APPLY_TOPIC}",
            )
        return new_response(request, body=body)

    def get_broker_cluster_info(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """ClusterInfo, always fastjson style (unquoted brokerId keys), as Java sends it."""
        return new_response(request, body=self.routes.get_all_cluster_info().to_json())

    def get_all_topic_list(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Every topic with queue data."""
        return new_response(request, body=topic_list_json(self.routes.get_all_topic_list()))

    def get_topics_by_cluster(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Topics with queue data on a broker of the cluster."""
        topics = self.routes.get_topics_by_cluster(request.ext_str("cluster"))
        return new_response(request, body=topic_list_json(topics))

    def get_system_topic_list(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Cluster and broker names (they are topics too) plus some broker's address."""
        topics, broker_addr = self.routes.get_system_topic_list()
        return new_response(request, body=topic_list_json(topics, broker_addr))

    def get_unit_topic_list(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Unit topics."""
        return new_response(request, body=topic_list_json(self.routes.get_unit_topics()))

    def get_has_unit_sub_topic_list(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Topics with a unit subscription."""
        topics = self.routes.get_has_unit_sub_topic_list()
        return new_response(request, body=topic_list_json(topics))

    def get_has_unit_sub_un_unit_topics(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Non-unit topics with a unit subscription."""
        topics = self.routes.get_has_unit_sub_un_unit_topic_list()
        return new_response(request, body=topic_list_json(topics))

    def delete_topic_in_namesrv(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Drop a topic (or, with ``clusterName``, its queue data on that cluster)."""
        topic = request.ext_str("topic")
        cluster = request.ext_str("clusterName", "").strip() or None
        self.routes.delete_topic(topic, cluster)
        self.log.info("Topic {topic} deleted (cluster {cluster})", topic=topic, cluster=cluster)
        return new_response(request)

    def wipe_write_perm_of_broker(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Clear the write permission of every topic on the broker; answer the count."""
        broker_name = request.ext_str("brokerName")
        count = self.routes.wipe_write_perm_of_broker(broker_name)
        self.log.info(
            "Write permission of {broker_name} wiped on {count} topics",
            broker_name=broker_name,
            count=count,
        )
        return new_response(request, ext_fields={"wipeTopicCount": count})

    def add_write_perm_of_broker(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Give every topic on the broker READ|WRITE; answer the count."""
        broker_name = request.ext_str("brokerName")
        count = self.routes.add_write_perm_of_broker(broker_name)
        self.log.info(
            "Write permission of {broker_name} restored on {count} topics",
            broker_name=broker_name,
            count=count,
        )
        return new_response(request, ext_fields={"addTopicCount": count})


@implementer(IRequestProcessor)
class KVConfigProcessor(_TableProcessor):
    """PUT/GET/DELETE_KV_CONFIG and GET_KVLIST_BY_NAMESPACE."""

    def __init__(self, kv: KVConfigManager) -> None:
        self.kv = kv
        self.handlers = {
            RequestCode.PUT_KV_CONFIG: self.put_kv_config,
            RequestCode.GET_KV_CONFIG: self.get_kv_config,
            RequestCode.DELETE_KV_CONFIG: self.delete_kv_config,
            RequestCode.GET_KVLIST_BY_NAMESPACE: self.get_kv_list_by_namespace,
        }

    def put_kv_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> Deferred[RemotingCommand]:
        """Store a value; answer once it is on disk."""
        namespace = request.ext_str("namespace", None)
        key = request.ext_str("key", None)
        if namespace is None or key is None:
            raise RMQError("namespace or key is null", ResponseCode.SYSTEM_ERROR)
        d = self.kv.put(namespace, key, request.ext_str("value"))
        return d.addCallback(lambda _: new_response(request))

    def get_kv_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """The value, or QUERY_NOT_FOUND with Java's remark."""
        namespace = request.ext_str("namespace")
        key = request.ext_str("key")
        value = self.kv.get(namespace, key)
        if value is None:
            return new_response(
                request,
                ResponseCode.QUERY_NOT_FOUND,
                f"No config item, Namespace: {namespace} Key: {key}",
                ext_fields={},
            )
        return new_response(request, ext_fields={"value": value})

    def delete_kv_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> Deferred[RemotingCommand]:
        """Remove a value (absent is fine); answer once the store is on disk."""
        d = self.kv.delete(request.ext_str("namespace"), request.ext_str("key"))
        return d.addCallback(lambda _: new_response(request))

    def get_kv_list_by_namespace(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """The namespace as a KVTable, or QUERY_NOT_FOUND when it does not exist."""
        namespace = request.ext_str("namespace")
        table = self.kv.get_kv_list_by_namespace(namespace)
        if table is None:
            return new_response(
                request, ResponseCode.QUERY_NOT_FOUND, f"No config item, Namespace: {namespace}"
            )
        return new_response(request, body=kv_table_json(table))


@implementer(IRequestProcessor)
class NamesrvConfigProcessor(_TableProcessor):
    """GET_NAMESRV_CONFIG and UPDATE_NAMESRV_CONFIG (java.util.Properties text bodies)."""

    log = Logger()

    def __init__(self, config: NamesrvConfigHolder) -> None:
        self.config = config
        self.handlers = {
            RequestCode.GET_NAMESRV_CONFIG: self.get_namesrv_config,
            RequestCode.UPDATE_NAMESRV_CONFIG: self.update_namesrv_config,
        }

    def get_namesrv_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Every config key as ``key=value`` lines."""
        text = format_properties(config_to_properties(self.config.current))
        return new_response(request, body=text.encode("utf-8"))

    def update_namesrv_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand | Deferred[RemotingCommand]:
        """Apply ``key=value`` lines; black-listed keys are refused with NO_PERMISSION.

        Unknown keys are ignored (logged) like Java; a value that does not convert is refused
        with SYSTEM_ERROR naming the key, and nothing is changed.
        """
        try:
            props = parse_properties(request.body.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise RMQError(f"string2Properties error: {e}", ResponseCode.SYSTEM_ERROR) from e
        current = self.config.current
        if any(key in current.black_list for key in props):
            return new_response(
                request, ResponseCode.NO_PERMISSION, "Can not update config in black list."
            )
        try:
            updated, unknown = apply_properties(current, props)
        except UsageError as e:
            raise RMQError(str(e), ResponseCode.SYSTEM_ERROR) from e
        for key in unknown:
            self.log.warn("UPDATE_NAMESRV_CONFIG: unknown key {key} ignored", key=key)
        self.config.current = updated
        self.log.info("NameServer config updated: {keys}", keys=sorted(set(props) - set(unknown)))
        path = updated.config_store_path
        if path and self.config.persist is not None:
            text = format_properties(config_to_properties(updated)).encode("utf-8")
            d = self.config.persist(path, text)
            if isinstance(d, Deferred):
                return d.addCallback(lambda _: new_response(request))
        return new_response(request)


def namesrv_dispatcher(
    routes: RouteInfoManager, kv: KVConfigManager, config: NamesrvConfigHolder
) -> Dispatcher:
    """A dispatcher with every NameServer command of protocol §4."""
    dispatcher = Dispatcher()
    processors: list[_TableProcessor] = [
        BrokerRegistrationProcessor(routes, kv),
        RouteQueryProcessor(routes, kv, config),
        KVConfigProcessor(kv),
        NamesrvConfigProcessor(config),
    ]
    for processor in processors:
        for code in processor.codes():
            dispatcher.register(code, processor)  # type: ignore[arg-type]
    return dispatcher
