"""Broker administration: the request codes ``mqadmin`` and dashboards use (protocol §5.11, §6.3,
§6.4).

Java counterpart: ``AdminBrokerProcessor`` (plus ``Broker2Client.resetOffset`` and the
runtime-info part of ``BrokerController``), split in three thin processors:

* :class:`TopicAdminProcessor`: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
  GET_ALL_TOPIC_CONFIG (21), GET_TOPIC_STATS_INFO (202), QUERY_CONSUME_QUEUE (321);
* :class:`GroupAdminProcessor`: subscription groups (200, 201, 207), GET_CONSUME_STATS (208),
  QUERY_TOPIC_CONSUME_BY_WHO (300), GET_ALL_CONSUMER_OFFSET (43), GET_ALL_DELAY_OFFSET (45),
  GET_CONSUMER_CONNECTION_LIST (203), GET_PRODUCER_CONNECTION_LIST (204),
  INVOKE_BROKER_TO_RESET_OFFSET (222), and the relays GET_CONSUMER_RUNNING_INFO (307) and
  CONSUME_MESSAGE_DIRECTLY (309);
* :class:`BrokerAdminProcessor`: GET_BROKER_RUNTIME_INFO (28), GET_BROKER_CONFIG (26),
  UPDATE_BROKER_CONFIG (25).

:func:`install_admin` wires them (and the runtime counters of :mod:`rmq.broker.stats`) into a
:class:`rmq.broker.service.Broker`, together with the codes of :mod:`rmq.broker.admin_ops`
(consume time spans, stats items, store maintenance, ACL stubs, ...).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.usage import UsageError

from rmq.broker.admin_ops import install_admin_ops, mq_key, offset_wrapper
from rmq.broker.clients import ConsumerManager, ProducerManager
from rmq.broker.codetable import CodeTableProcessor
from rmq.broker.config import BrokerConfig
from rmq.broker.dataversion import DataVersion
from rmq.broker.identity import BrokerIdentity
from rmq.broker.offsets import ConsumerOffsetManager
from rmq.broker.stats import BrokerStats, CountingPullProcessor, disk_figures
from rmq.broker.subscription import SubscriptionGroupConfig, SubscriptionGroupManager
from rmq.broker.topic import (
    SCHEDULE_TOPIC,
    SINGLE_TAG,
    TopicConfig,
    TopicConfigManager,
    is_system_topic,
    topic_name_problem,
)
from rmq.common import fastjson
from rmq.common.asyncutil import now_ms
from rmq.common.atomicfile import read_with_backup
from rmq.common.config import apply_properties, config_to_properties, parse_properties
from rmq.common.errors import RMQError
from rmq.remoting.codes import CURRENT_VERSION, RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.interfaces import IRemotingConnection
from rmq.store.interfaces import IMessageStore

if TYPE_CHECKING:
    from rmq.broker.service import Broker

#: Java's default response remark, left in place by some admin answers (protocol §5.11).
DEFAULT_REMARK = "not set any response code"
BROKER_VERSION_DESC = "V4_9_7"
#: Oldest client version that understands RESET_CONSUMER_CLIENT_OFFSET (V3_0_7_SNAPSHOT).
MIN_RESET_CLIENT_VERSION = 28
RELAY_TIMEOUT_S = 5.0
#: Where UPDATE_BROKER_CONFIG keeps the keys it changed (read again at the next start).
BROKER_CONFIG_OVERLAY = "broker.properties"
DELAY_OFFSET_FILE = "delayOffset.json"
_PHYSICAL_OFFSET = struct.Struct(">q")
_PHYSICAL_OFFSET_POS = 28

#: broker.conf keys UPDATE_BROKER_CONFIG may change on a running broker (they are read at use).
LIVE_CONFIG_KEYS = frozenset(
    {
        "autoCreateTopicEnable",
        "autoCreateSubscriptionGroup",
        "defaultTopicQueueNums",
        "brokerPermission",
        "notifyConsumerIdsChangedEnable",
        "channelExpiredTimeout",
        "maxMessageSize",
        "defaultQueryMaxNum",
        "maxMsgsNumBatch",
        "rejectTransactionMessage",
        "sendThreadPoolQueueCapacity",
        "traceOn",
        "regionId",
        "slaveReadEnable",
        "enablePropertyFilter",
        "forceRegister",
        "compressedRegister",
        "compressRegisterOverBytes",
        "registerBrokerTimeoutMills",
    }
)


def _connection_json(info: Any) -> dict[str, Any]:
    """A Java ``Connection`` bean (clientAddr, clientId, language, version)."""
    return {
        "clientAddr": info.address,
        "clientId": info.client_id,
        "language": info.language,
        "version": info.version,
    }


def _error(code: int, remark: str) -> RMQError:
    return RMQError(remark, code)


# ---------------------------------------------------------------------------------------------
# topics


class TopicAdminProcessor(CodeTableProcessor):
    """Codes 17, 215, 21, 202, 321 (Java ``AdminBrokerProcessor``, topic part)."""

    log = Logger()

    def __init__(
        self,
        config: BrokerConfig,
        identity: BrokerIdentity,
        topics: TopicConfigManager,
        store: IMessageStore,
        consumers: ConsumerManager,
        stats: BrokerStats | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.topics = topics
        self.store = store
        self.consumers = consumers
        self.stats = stats
        self.handlers = {
            RequestCode.UPDATE_AND_CREATE_TOPIC: self._update_and_create,
            RequestCode.DELETE_TOPIC_IN_BROKER: self._delete,
            RequestCode.GET_ALL_TOPIC_CONFIG: self._all_topic_config,
            RequestCode.GET_TOPIC_STATS_INFO: self._topic_stats,
            RequestCode.QUERY_CONSUME_QUEUE: self._query_consume_queue,
        }

    def _check_not_system(self, topic: str) -> None:
        """Refuse the cluster's own topic and RocketMQ's system topics (Java's remark)."""
        if topic == self.identity.cluster_name or is_system_topic(topic):
            raise _error(
                ResponseCode.SYSTEM_ERROR,
                f"The topic[{topic}] is conflict with system topic.",
            )

    def _all_topic_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        if not len(self.topics):
            raise _error(ResponseCode.SYSTEM_ERROR, "No topic in this broker")
        return new_response(request, body=self.topics.encode_compact())

    def _update_and_create(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        problem = topic_name_problem(topic)
        if problem is not None:
            raise _error(ResponseCode.SYSTEM_ERROR, problem)
        self._check_not_system(topic)
        if not self.config.is_master:
            raise _error(
                ResponseCode.NO_PERMISSION,
                f"the broker[{self.identity.broker_name}] is a slave; topics are created on the "
                "master",
            )
        filter_type = request.ext_str("topicFilterType", SINGLE_TAG) or SINGLE_TAG
        config = TopicConfig(
            topic_name=topic,
            read_queue_nums=request.ext_int("readQueueNums"),
            write_queue_nums=request.ext_int("writeQueueNums"),
            perm=request.ext_int("perm"),
            topic_filter_type=filter_type,
            topic_sys_flag=request.ext_int("topicSysFlag", 0),
            order=request.ext_bool("order", False),
        )
        if config.read_queue_nums < 0 or config.write_queue_nums < 0:
            raise _error(ResponseCode.SYSTEM_ERROR, "queue numbers must not be negative")
        # The manager's listeners persist topics.json and re-register with the NameServers.
        self.topics.update_topic_config(config)
        return new_response(request, remark=DEFAULT_REMARK)

    async def _delete(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        self._check_not_system(topic)
        self.topics.delete_topic_config(topic)
        if self.stats is not None:
            self.stats.topic_puts.pop(topic, None)
        # Consumer offsets are kept (as Java 4.9.7 does); the store drops the consume queues
        # (the commit log keeps the records; a later put starts the queues at offset 0).
        await self.store.delete_topics({topic})
        return new_response(request)

    async def _topic_stats(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        config = self.topics.select(topic)
        if config is None:
            raise _error(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        table: dict[Any, Any] = {}
        for qid in range(config.write_queue_nums):
            max_offset = max(0, self.store.get_max_offset_in_queue(topic, qid))
            min_offset = max(0, self.store.get_min_offset_in_queue(topic, qid))
            last = 0
            if max_offset > 0:
                last = await self.store.get_message_store_timestamp(topic, qid, max_offset - 1)
            table[mq_key(topic, self.identity.broker_name, qid)] = {
                "lastUpdateTimestamp": last,
                "maxOffset": max_offset,
                "minOffset": min_offset,
            }
        return new_response(request, body=fastjson.dumps({"offsetTable": table}))

    async def _query_consume_queue(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        qid = request.ext_int("queueId")
        index = request.ext_int("index")
        count = request.ext_int("count")
        group = request.ext_fields.get("consumerGroup") or ""
        if qid not in self.store.topic_queues().get(topic, ()):
            raise _error(ResponseCode.SYSTEM_ERROR, f"{qid}@{topic} is not exist!")
        body: dict[str, Any] = {
            "maxQueueIndex": self.store.get_max_offset_in_queue(topic, qid),
            "minQueueIndex": self.store.get_min_offset_in_queue(topic, qid),
        }
        sub = None
        if group:
            sub = self.consumers.find_subscription(group, topic)
            if sub is None:
                # Java answers anyway, saying so in filterData.
                body["filterData"] = f"{group}@{topic} is not online!"
            else:
                # Java's ConsumerFilterData as JSON: null for a tag subscription.
                body["filterData"] = "null"
                body["subscriptionData"] = sub.to_json()
        result = await self.store.get_messages(topic, qid, index, max(0, count))
        if not result.messages:
            # Java: code 0 with this remark and no body.
            return new_response(request, remark=f"Index {index} of {qid}@{topic} is not exist!")
        units = []
        for record, tags in zip(result.messages, result.tags_codes, strict=False):
            units.append(
                {
                    "eval": sub.is_matched_by_tags_code(tags) if sub is not None else False,
                    "physicOffset": _PHYSICAL_OFFSET.unpack_from(record, _PHYSICAL_OFFSET_POS)[0],
                    "physicSize": len(record),
                    "tagsCode": tags,
                }
            )
        body["queueData"] = units
        body = dict(sorted(body.items()))  # fastjson's bean order
        return new_response(request, remark=DEFAULT_REMARK, body=fastjson.dumps(body))


# ---------------------------------------------------------------------------------------------
# groups, offsets, connections


class GroupAdminProcessor(CodeTableProcessor):
    """Consumer/producer group administration (Java ``AdminBrokerProcessor``, ``Broker2Client``).

    Answers codes 200, 201, 207, 208, 300, 43, 45, 203, 204, 222, 307 and 309.
    """

    log = Logger()

    def __init__(
        self,
        identity: BrokerIdentity,
        topics: TopicConfigManager,
        groups: SubscriptionGroupManager,
        offsets: ConsumerOffsetManager,
        consumers: ConsumerManager,
        producers: ProducerManager,
        store: IMessageStore,
        stats: BrokerStats,
        delay_offsets: Callable[[], dict[int, int] | None],
    ) -> None:
        self.identity = identity
        self.topics = topics
        self.groups = groups
        self.offsets = offsets
        self.consumers = consumers
        self.producers = producers
        self.store = store
        self.stats = stats
        self.delay_offsets = delay_offsets
        self.handlers = {
            RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: self._update_group,
            RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG: self._all_groups,
            RequestCode.DELETE_SUBSCRIPTIONGROUP: self._delete_group,
            RequestCode.GET_CONSUME_STATS: self._consume_stats,
            RequestCode.QUERY_TOPIC_CONSUME_BY_WHO: self._consumed_by_who,
            RequestCode.GET_ALL_CONSUMER_OFFSET: self._all_consumer_offsets,
            RequestCode.GET_ALL_DELAY_OFFSET: self._all_delay_offsets,
            RequestCode.GET_CONSUMER_CONNECTION_LIST: self._consumer_connections,
            RequestCode.GET_PRODUCER_CONNECTION_LIST: self._producer_connections,
            RequestCode.INVOKE_BROKER_TO_RESET_OFFSET: self._reset_offset,
            RequestCode.GET_CONSUMER_RUNNING_INFO: self._relay,
            RequestCode.CONSUME_MESSAGE_DIRECTLY: self._relay,
        }

    def _all_groups(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        return new_response(request, body=fastjson.dumps(self.groups.to_json()))

    def _delete_group(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        group = request.ext_str("groupName")
        self.groups.delete(group)
        if request.ext_bool("removeOffset", False):
            self.offsets.remove_group(group)
        return new_response(request)

    def _consumed_by_who(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        names = set(self.consumers.groups_of_topic(topic)) | self.offsets.groups_of_topic(topic)
        return new_response(request, body=fastjson.dumps({"groupList": sorted(names)}))

    def _all_consumer_offsets(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        return new_response(request, body=self.offsets.encode_compact())

    def _all_delay_offsets(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        table = self.delay_offsets()
        if table is None:
            raise _error(ResponseCode.SYSTEM_ERROR, "No delay offset in this broker")
        return new_response(
            request, body=fastjson.dumps({"offsetTable": dict(sorted(table.items()))})
        )

    def _producer_connections(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        group = request.ext_str("producerGroup")
        channels = self.producers.channels(group)
        if not channels:
            raise _error(ResponseCode.SYSTEM_ERROR, f"the producer group[{group}] not exist")
        body = {"connectionSet": [_connection_json(c) for c in channels]}
        return new_response(request, body=fastjson.dumps(body))

    def _update_group(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        try:
            obj = fastjson.loads(request.body)
        except ValueError as e:
            raise _error(ResponseCode.SYSTEM_ERROR, f"bad SubscriptionGroupConfig: {e}") from e
        if not isinstance(obj, dict):
            raise _error(ResponseCode.SYSTEM_ERROR, "SubscriptionGroupConfig is not an object")
        config = SubscriptionGroupConfig.from_json(obj)
        if not config.group_name:
            raise _error(ResponseCode.SYSTEM_ERROR, "groupName is blank")
        self.groups.update(config)
        return new_response(request)

    async def _consume_stats(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        group = request.ext_str("consumerGroup")
        wanted = request.ext_fields.get("topic") or ""
        topics = [wanted] if wanted else sorted(self.offsets.topics_of_group(group))
        online = self.consumers.group(group)
        table: dict[Any, Any] = {}
        for topic in topics:
            config = self.topics.select(topic)
            if config is None:
                continue
            if online is not None and online.subscriptions and topic not in online.subscriptions:
                continue  # the live group no longer subscribes to it (as Java skips it)
            for qid in range(config.read_queue_nums):
                table[mq_key(topic, self.identity.broker_name, qid)] = await offset_wrapper(
                    self.store, self.offsets, group, topic, qid
                )
        body = {"consumeTps": self.stats.group_tps(group), "offsetTable": table}
        return new_response(request, body=fastjson.dumps(body))

    def _consumer_connections(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        group = request.ext_str("consumerGroup")
        info = self.consumers.group(group)
        if info is None or not info.channels:
            raise _error(
                ResponseCode.CONSUMER_NOT_ONLINE, f"the consumer group[{group}] not online"
            )
        body = {
            "connectionSet": [_connection_json(c) for c in info.channels.values()],
            "consumeFromWhere": info.consume_from_where,
            "consumeType": info.consume_type,
            "messageModel": info.message_model,
            "subscriptionTable": {t: s.to_json() for t, s in sorted(info.subscriptions.items())},
        }
        return new_response(request, body=fastjson.dumps(body))

    def compute_reset_offsets(
        self, topic: str, group: str, timestamp_ms: int, force: bool
    ) -> Deferred[dict[int, int]]:
        """Target offset per write queue of ``topic`` (Java ``Broker2Client.resetOffset``).

        ``timestamp_ms`` −1 means the max offset. Without ``force`` offsets only move backwards.
        Fails with RMQError SYSTEM_ERROR when the topic is unknown or the group has no offset.
        """
        return Deferred.fromCoroutine(self._targets(topic, group, timestamp_ms, force))

    async def _targets(
        self, topic: str, group: str, timestamp_ms: int, force: bool
    ) -> dict[int, int]:
        config = self.topics.select(topic)
        if config is None:
            raise _error(
                ResponseCode.SYSTEM_ERROR,
                f"[reset-offset] reset offset failed, no topic in this broker. topic={topic}",
            )
        targets: dict[int, int] = {}
        for qid in range(config.write_queue_nums):
            current = self.offsets.query_offset(group, topic, qid)
            if current == -1:
                raise _error(ResponseCode.SYSTEM_ERROR, f"THe consumer group <{group}> not exist")
            if timestamp_ms == -1:
                target = self.store.get_max_offset_in_queue(topic, qid)
            else:
                target = await self.store.get_offset_in_queue_by_time(topic, qid, timestamp_ms)
            target = max(0, target)
            targets[qid] = target if force or target < current else current
        return targets

    async def _reset_offset(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        topic = request.ext_str("topic")
        group = request.ext_str("group")
        timestamp = request.ext_int("timestamp")
        force = request.ext_bool("isForce", False)
        targets = await self._targets(topic, group, timestamp, force)
        info = self.consumers.group(group)
        if info is None or not info.channels:
            raise _error(
                ResponseCode.CONSUMER_NOT_ONLINE,
                f"Consumer not online, so can not reset offset, Group: {group} Topic: {topic} "
                f"Timestamp: {timestamp}",
            )
        for channel in info.channels.values():
            if 0 < channel.version < MIN_RESET_CLIENT_VERSION:
                raise _error(
                    ResponseCode.SYSTEM_ERROR,
                    f"the client does not support this feature. version={channel.version}",
                )
        broker = self.identity.broker_name
        java_body = fastjson.dumps(
            {"offsetTable": {mq_key(topic, broker, q): o for q, o in targets.items()}}
        )
        for channel in list(info.channels.values()):
            if channel.language == "CPP":
                body = fastjson.dumps(
                    {
                        "offsetTable": [
                            {"brokerName": broker, "offset": o, "queueId": q, "topic": topic}
                            for q, o in targets.items()
                        ]
                    }
                )
            else:
                body = java_body
            notify = new_request(
                RequestCode.RESET_CONSUMER_CLIENT_OFFSET,
                {"topic": topic, "group": group, "timestamp": timestamp, "isForce": force},
                body,
                oneway=True,
            )
            channel.connection.send_oneway(notify)
        for qid, offset in targets.items():
            self.offsets.commit_offset(group, topic, qid, offset)
        self.log.info(
            "Reset offsets of {group} on {topic} to {targets} (timestamp {ts}), told {n} clients",
            group=group,
            topic=topic,
            targets=targets,
            ts=timestamp,
            n=len(info.channels),
        )
        return new_response(request, body=java_body)

    async def _relay(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        group = request.ext_str("consumerGroup")
        client_id = request.ext_str("clientId")
        info = self.consumers.group(group)
        channel = None
        if info is not None:
            channel = next((c for c in info.channels.values() if c.client_id == client_id), None)
        if channel is None:
            raise _error(ResponseCode.SYSTEM_ERROR, f"The Consumer <{client_id}> not online")
        forward = new_request(request.code, request.ext_fields, request.body)
        try:
            answer: RemotingCommand = await channel.connection.invoke(forward, RELAY_TIMEOUT_S)
        except Exception as e:
            raise _error(
                ResponseCode.SYSTEM_ERROR, f"invoke consumer {client_id} failed: {e}"
            ) from e
        return new_response(request, answer.code, answer.remark, answer.ext_fields, answer.body)


# ---------------------------------------------------------------------------------------------
# broker config and runtime info


class BrokerConfigUpdater:
    """Applies UPDATE_BROKER_CONFIG to a running broker and keeps the changed keys on disk.

    Only :data:`LIVE_CONFIG_KEYS` may change; the new :class:`BrokerConfig` replaces the old one
    in every object that holds it, and the settings copied into managers are updated too. The
    changed keys are written to ``config/broker.properties`` and applied again at the next build.
    """

    log = Logger()

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.data_version = DataVersion(timestamp=now_ms(broker.clock))
        self.overlay: dict[str, str] = {}
        self.file_name = BROKER_CONFIG_OVERLAY

    @property
    def path(self) -> str:
        """``<storePathRootDir>/config/broker.properties``."""
        return os.path.join(self.broker.config.config_dir, BROKER_CONFIG_OVERLAY)

    def encode(self) -> bytes:
        """The overlay as Properties text."""
        return "".join(f"{k}={v}\n" for k, v in sorted(self.overlay.items())).encode("utf-8")

    def load_overlay(self) -> None:
        """Apply a ``broker.properties`` written by an earlier UPDATE_BROKER_CONFIG."""
        data = read_with_backup(self.path)
        if data:
            self.decode(data)

    def decode(self, data: bytes) -> None:
        """Apply the live keys of a ``broker.properties`` text (others are ignored)."""
        props = parse_properties(data.decode("utf-8", "replace"))
        props = {k: v for k, v in props.items() if k in LIVE_CONFIG_KEYS}
        if props:
            self._apply(props)
            self.overlay.update(props)
            self.log.info("Applied {keys} from {path}", keys=sorted(props), path=self.path)

    def update(self, props: dict[str, str]) -> None:
        """Check, apply and persist ``props``; RMQError SYSTEM_ERROR naming a refused key."""
        if not props:
            raise _error(ResponseCode.SYSTEM_ERROR, "string2Properties error: no key=value line")
        known = set(config_to_properties(self.broker.config))
        unknown = sorted(k for k in props if k not in known)
        if unknown:
            raise _error(ResponseCode.SYSTEM_ERROR, f"unknown broker config key(s): {unknown}")
        restart = sorted(k for k in props if k not in LIVE_CONFIG_KEYS)
        if restart:
            raise _error(
                ResponseCode.SYSTEM_ERROR,
                f"config key(s) {restart} cannot change while the broker runs; set them in "
                "broker.conf and restart (live keys: " + ", ".join(sorted(LIVE_CONFIG_KEYS)) + ")",
            )
        self._apply(props)
        self.overlay.update(props)
        self.data_version = self.data_version.next(now_ms(self.broker.clock))
        self.broker.persister.request(self)
        self.log.info("Broker config updated: {props}", props=props)

    def _apply(self, props: dict[str, str]) -> None:
        b = self.broker
        old = b.config
        try:
            new, _ = apply_properties(old, props)
        except (UsageError, ValueError) as e:
            raise _error(ResponseCode.SYSTEM_ERROR, str(e)) from e
        for holder in _config_holders(b):
            if getattr(holder, "config", None) is old:
                holder.config = new
        b.config = new
        b.topics.defaults = attrs.evolve(
            b.topics.defaults,
            auto_create_topic_enable=new.auto_create_topic_enable,
            default_topic_queue_nums=new.default_topic_queue_nums,
        )
        b.groups.auto_create = new.auto_create_subscription_group
        b.consumers.notify_enabled = new.notify_consumer_ids_changed_enable
        b.consumers.channel_expired_ms = new.channel_expired_timeout_ms
        b.producers.channel_expired_ms = new.channel_expired_timeout_ms
        limiter = getattr(b.send, "limiter", None)
        if limiter is not None:
            limiter.capacity = new.send_thread_pool_queue_capacity
        if b.identity.permission != new.broker_permission:
            b.identity.permission = new.broker_permission
            b.registration.topics_changed()


def _config_holders(broker: Broker) -> list[Any]:
    """Every object of ``broker`` that keeps a reference to its BrokerConfig."""
    holders: list[Any] = [broker.send, broker.registration]
    holders += list(broker.send_hooks) + list(getattr(broker, "components", ()))
    for code in range(0, 1024):
        processor = broker.dispatcher.processor_for(code)
        while processor is not None and processor not in holders:
            holders.append(processor)
            processor = getattr(processor, "inner", None)
    return holders


class BrokerAdminProcessor(CodeTableProcessor):
    """Codes 25, 26, 28 (Java ``AdminBrokerProcessor`` config/runtime part)."""

    def __init__(
        self,
        broker: Broker,
        stats: BrokerStats,
        updater: BrokerConfigUpdater,
        delay_offsets: Callable[[], dict[int, int] | None],
    ) -> None:
        self.broker = broker
        self.stats = stats
        self.updater = updater
        self.delay_offsets = delay_offsets
        self.handlers = {
            RequestCode.GET_BROKER_RUNTIME_INFO: self._runtime_info,
            RequestCode.GET_BROKER_CONFIG: self._broker_config,
            RequestCode.UPDATE_BROKER_CONFIG: self._update_broker_config,
        }

    async def _runtime_info(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        table = await self.runtime_info()
        return new_response(request, body=fastjson.dumps({"table": table}))

    def _broker_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        body = "".join(f"{k}={v}\n" for k, v in self.config_properties().items())
        version = fastjson.dumps(self.updater.data_version.to_json()).decode("ascii")
        return new_response(request, ext_fields={"version": version}, body=body.encode("utf-8"))

    def _update_broker_config(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        text = request.body.decode("utf-8", "replace")
        self.updater.update(parse_properties(text))
        return new_response(request)

    def config_properties(self) -> dict[str, str]:
        """Every broker key with its current value, then the store's keys."""
        props = config_to_properties(self.broker.config)
        store_config = getattr(self.broker.store, "config", None) or getattr(
            self.broker.store, "_config", None
        )
        if store_config is not None and attrs.has(type(store_config)):
            for key, value in config_to_properties(store_config).items():
                props.setdefault(key, value)
        return props

    async def runtime_info(self) -> dict[str, str]:
        """GET_BROKER_RUNTIME_INFO's table: counters, store bounds, disk, delay progress."""
        b = self.broker
        store = b.store
        table = self.stats.runtime_table()
        table["brokerVersion"] = str(CURRENT_VERSION)
        table["brokerVersionDesc"] = BROKER_VERSION_DESC
        table["commitLogMinOffset"] = str(store.get_min_phy_offset())
        table["commitLogMaxOffset"] = str(store.get_max_phy_offset())
        table["earliestMessageTimeStamp"] = str(await store.get_earliest_store_time())
        table["sendThreadPoolQueueCapacity"] = str(b.config.send_thread_pool_queue_capacity)
        limiter = getattr(b.send, "limiter", None)
        table["sendThreadPoolQueueSize"] = str(getattr(limiter, "in_flight", 0))
        commitlog_dir = os.path.join(b.config.store_path_root_dir, "commitlog")
        disk = disk_figures(commitlog_dir)
        if disk is not None:
            ratio, capacity = disk
            table["commitLogDiskRatio"] = str(ratio)
            table[f"commitLogDiskRatio_{commitlog_dir}"] = str(ratio)
            table["commitLogDirCapacity"] = capacity
        delay = self.delay_offsets()
        for level, delivered in sorted((delay or {}).items()):
            max_offset = store.get_max_offset_in_queue(SCHEDULE_TOPIC, level - 1)
            table[f"scheduleMessageOffset_{level}"] = f"{delivered},{max_offset}"
        warnings = b.consumers.warnings()
        if warnings:
            table["consumerGroupWarnings"] = "; ".join(
                f"{g}: {' / '.join(w)}" for g, w in sorted(warnings.items())
            )
        return table


# ---------------------------------------------------------------------------------------------
# wiring


def delay_offset_source(broker: Broker) -> Callable[[], dict[int, int] | None]:
    """Where delay offsets come from: the schedule service's table when the broker has one
    (a table named ``delayOffset.json`` in ``broker.tables``), else ``config/delayOffset.json``.

    The callable returns ``{level: offset}`` or None when there is no delay offset at all.
    """

    def parse(data: bytes | None) -> dict[int, int] | None:
        if not data or not data.strip():
            return None
        try:
            obj = fastjson.loads(data)
        except ValueError:
            return None
        table = obj.get("offsetTable") if isinstance(obj, dict) else None
        if not isinstance(table, dict):
            return None
        return {int(k): int(v) for k, v in table.items()}

    def source() -> dict[int, int] | None:
        for table in broker.tables:
            if getattr(table, "file_name", None) == DELAY_OFFSET_FILE:
                return parse(table.encode())
        path = os.path.join(broker.config.config_dir, DELAY_OFFSET_FILE)
        return parse(read_with_backup(path, fastjson.loads))

    return source


def install_admin(broker: Broker) -> BrokerStats:
    """Register the admin processors and the runtime counters on ``broker``; returns the stats.

    The PULL_MESSAGE processor is wrapped to count gets; puts are counted once the store has
    started (``BrokerStats.store_started``, called by the broker service).
    """
    stats = BrokerStats(broker.clock, broker.store.get_max_phy_offset)
    pull = broker.dispatcher.processor_for(RequestCode.PULL_MESSAGE)
    if pull is not None:
        broker.dispatcher.register(RequestCode.PULL_MESSAGE, CountingPullProcessor(pull, stats))
    delay = delay_offset_source(broker)
    topic_admin = TopicAdminProcessor(
        broker.config, broker.identity, broker.topics, broker.store, broker.consumers, stats
    )
    group_admin = GroupAdminProcessor(
        broker.identity,
        broker.topics,
        broker.groups,
        broker.offsets,
        broker.consumers,
        broker.producers,
        broker.store,
        stats,
        delay,
    )
    updater = BrokerConfigUpdater(broker)
    broker_admin = BrokerAdminProcessor(broker, stats, updater, delay)
    for processor in (topic_admin, group_admin, broker_admin):
        processor.register_with(broker.dispatcher)
    install_admin_ops(broker, stats)
    try:
        updater.load_overlay()
    except RMQError as e:
        Logger().warn("Ignoring {path}: {error}", path=updater.path, error=e.remark)
    return stats


__all__ = [
    "BrokerAdminProcessor",
    "BrokerConfigUpdater",
    "GroupAdminProcessor",
    "LIVE_CONFIG_KEYS",
    "TopicAdminProcessor",
    "delay_offset_source",
    "install_admin",
]
