"""Admin operations over the wire (Java ``DefaultMQAdminExt`` / ``MQClientAPIImpl``, admin part).

:class:`MQAdmin` speaks RocketMQ remoting to NameServers and brokers through one
:class:`rmq.remoting.client.RemotingClient`. Every public method returns a Deferred; it fails with
:class:`rmq.common.errors.MQClientError` when no NameServer answers (the message names every
address tried), with ``RemotingConnectError``/``RemotingTimeoutError`` naming a broker address it
could not reach, and with :class:`rmq.common.errors.MQBrokerError` (code, remark, address) when a
server answers with an error code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from rmq.client.api import MQClientAPI
from rmq.common import fastjson
from rmq.common.asyncutil import deferred_api
from rmq.common.config import parse_properties
from rmq.common.errors import MQBrokerError, MQClientError, RemotingError
from rmq.common.message import MessageExt, decode_messages, decode_offset_msg_id
from rmq.common.route import MASTER_ID, ClusterInfo, TopicRouteData
from rmq.remoting.client import RemotingClient
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request

RETRY_PREFIX = "%RETRY%"
DLQ_PREFIX = "%DLQ%"
ORDER_TOPIC_CONFIG = "ORDER_TOPIC_CONFIG"


@attrs.frozen
class QueueKey:
    """A (topic, broker name, queue id) triple read from a MessageQueue-keyed map."""

    topic: str
    broker_name: str
    queue_id: int


def mq_map(body: bytes) -> dict[QueueKey, Any]:
    """The ``offsetTable`` of a ConsumeStats / TopicStatsTable / ResetOffsetBody body."""
    table = fastjson.loads(body).get("offsetTable") or {}
    out: dict[QueueKey, Any] = {}
    for key, value in table.items():
        d = key.as_dict() if isinstance(key, fastjson.ObjectKey) else fastjson.loads(key)
        out[QueueKey(str(d["topic"]), str(d["brokerName"]), int(d["queueId"]))] = value
    return out


def _check(response: RemotingCommand, addr: str) -> RemotingCommand:
    if response.code != ResponseCode.SUCCESS:
        raise MQBrokerError(response.code, response.remark or "", addr)
    return response


class MQAdmin:
    """Admin requests to the NameServers ``namesrv_addrs`` and the brokers they list."""

    def __init__(
        self,
        remoting: RemotingClient,
        clock: IReactorTime,
        namesrv_addrs: Sequence[str],
        timeout: float = 5.0,
    ) -> None:
        self.remoting = remoting
        self.clock = clock
        self.timeout = timeout
        self.namesrv_addrs = list(namesrv_addrs)
        self._api = MQClientAPI(remoting, clock, namesrv_addrs, timeout)

    def close(self) -> Deferred[None]:
        """Close every connection."""
        return self.remoting.close()

    # -- plumbing -------------------------------------------------------------------------

    async def _namesrv(
        self, code: int, fields: Mapping[str, object] | None = None, body: bytes = b""
    ) -> RemotingCommand:
        return await self._api.invoke_namesrv(new_request(code, fields, body))

    async def _namesrv_ok(
        self, code: int, fields: Mapping[str, object] | None = None, body: bytes = b""
    ) -> RemotingCommand:
        response = await self._namesrv(code, fields, body)
        return _check(response, "namesrv")

    async def _each_namesrv(self, code: int, fields: Mapping[str, object]) -> None:
        """Send to every NameServer (KV and topic deletion go to all of them, like Java)."""
        if not self.namesrv_addrs:
            raise MQClientError("No NameServer address configured")
        for addr in self.namesrv_addrs:
            response = await self._invoke(addr, new_request(code, fields))
            _check(response, addr)

    async def _invoke(self, addr: str, request: RemotingCommand) -> RemotingCommand:
        """Invoke ``addr``; a transport error's message always names the address."""
        try:
            return await self.remoting.invoke(addr, request, self.timeout)
        except RemotingError as e:
            if addr in e.remark:
                raise
            raise type(e)(f"{addr}: {e.remark}", e.code) from e

    async def broker_call(
        self,
        addr: str,
        code: int,
        fields: Mapping[str, object] | None = None,
        body: bytes = b"",
        ok: Iterable[int] = (ResponseCode.SUCCESS,),
    ) -> RemotingCommand:
        """One request to the broker at ``addr``; MQBrokerError for a code not in ``ok``."""
        response = await self._invoke(addr, new_request(code, fields, body))
        if response.code not in tuple(ok):
            raise MQBrokerError(response.code, response.remark or "", addr)
        return response

    # -- NameServer -----------------------------------------------------------------------

    @deferred_api
    async def cluster_info(self) -> ClusterInfo:
        """GET_BROKER_CLUSTER_INFO."""
        response = await self._namesrv_ok(RequestCode.GET_BROKER_CLUSTER_INFO)
        return ClusterInfo.from_json(response.body)

    @deferred_api
    async def topic_list(self) -> list[str]:
        """GET_ALL_TOPIC_LIST_FROM_NAMESERVER."""
        response = await self._namesrv_ok(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
        return [str(t) for t in fastjson.loads(response.body).get("topicList") or []]

    @deferred_api
    async def topic_route(self, topic: str) -> TopicRouteData:
        """GET_ROUTEINFO_BY_TOPIC; MQBrokerError(17) when the topic has no route."""
        response = await self._namesrv_ok(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
        return TopicRouteData.from_json(response.body)

    @deferred_api
    async def put_kv_config(self, namespace: str, key: str, value: str) -> None:
        """PUT_KV_CONFIG to every NameServer."""
        await self._each_namesrv(
            RequestCode.PUT_KV_CONFIG, {"namespace": namespace, "key": key, "value": value}
        )

    @deferred_api
    async def get_kv_config(self, namespace: str, key: str) -> str:
        """GET_KV_CONFIG; MQBrokerError(22) when there is no such key."""
        response = await self._namesrv_ok(
            RequestCode.GET_KV_CONFIG, {"namespace": namespace, "key": key}
        )
        return response.ext_fields.get("value", "")

    @deferred_api
    async def delete_kv_config(self, namespace: str, key: str) -> None:
        """DELETE_KV_CONFIG on every NameServer."""
        await self._each_namesrv(RequestCode.DELETE_KV_CONFIG, {"namespace": namespace, "key": key})

    # -- broker addresses -----------------------------------------------------------------

    @deferred_api
    async def master_addrs(self, cluster: str) -> list[tuple[str, str]]:
        """``(brokerName, master address)`` of every broker of ``cluster`` (sorted by name)."""
        info = await self.cluster_info()
        names = info.cluster_addr_table.get(cluster)
        if names is None:
            known = ", ".join(sorted(info.cluster_addr_table)) or "none"
            raise MQClientError(f"cluster {cluster} not found (known clusters: {known})")
        out = []
        for name in sorted(names):
            data = info.broker_addr_table.get(name)
            addr = data.master_addr() if data else None
            if addr:
                out.append((name, addr))
        return out

    @deferred_api
    async def topic_masters(self, topic: str) -> list[tuple[str, str]]:
        """``(brokerName, master address)`` of every broker serving ``topic``."""
        route = await self.topic_route(topic)
        return sorted(
            (b.broker_name, b.broker_addrs[MASTER_ID])
            for b in route.broker_datas
            if MASTER_ID in b.broker_addrs
        )

    # -- broker operations ----------------------------------------------------------------

    @deferred_api
    async def create_topic(
        self,
        addr: str,
        topic: str,
        read_queue_nums: int,
        write_queue_nums: int,
        perm: int,
        order: bool = False,
        topic_filter_type: str = "SINGLE_TAG",
        topic_sys_flag: int = 0,
    ) -> None:
        """UPDATE_AND_CREATE_TOPIC on the broker at ``addr``."""
        await self.broker_call(
            addr,
            RequestCode.UPDATE_AND_CREATE_TOPIC,
            {
                "topic": topic,
                "defaultTopic": "TBW102",
                "readQueueNums": read_queue_nums,
                "writeQueueNums": write_queue_nums,
                "perm": perm,
                "topicFilterType": topic_filter_type,
                "topicSysFlag": topic_sys_flag,
                "order": order,
            },
        )

    @deferred_api
    async def delete_topic(self, topic: str, cluster: str) -> list[str]:
        """DELETE_TOPIC_IN_BROKER on every master of ``cluster``, then DELETE_TOPIC_IN_NAMESRV
        on every NameServer; fires with the broker addresses."""
        addrs = [addr for _, addr in await self.master_addrs(cluster)]
        for addr in addrs:
            await self.broker_call(addr, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": topic})
        await self._each_namesrv(
            RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": topic, "clusterName": cluster}
        )
        return addrs

    @deferred_api
    async def topic_stats(self, addr: str, topic: str) -> dict[QueueKey, dict[str, int]]:
        """GET_TOPIC_STATS_INFO."""
        response = await self.broker_call(addr, RequestCode.GET_TOPIC_STATS_INFO, {"topic": topic})
        return mq_map(response.body)

    @deferred_api
    async def runtime_info(self, addr: str) -> dict[str, str]:
        """GET_BROKER_RUNTIME_INFO's table."""
        response = await self.broker_call(addr, RequestCode.GET_BROKER_RUNTIME_INFO)
        table = fastjson.loads(response.body).get("table") or {}
        return {str(k): str(v) for k, v in table.items()}

    @deferred_api
    async def consume_stats(
        self, addr: str, group: str, topic: str | None = None
    ) -> tuple[float, dict[QueueKey, dict[str, int]]]:
        """GET_CONSUME_STATS: ``(consumeTps, offsets per queue)``."""
        response = await self.broker_call(
            addr, RequestCode.GET_CONSUME_STATS, {"consumerGroup": group, "topic": topic}
        )
        obj = fastjson.loads(response.body)
        return float(obj.get("consumeTps") or 0.0), mq_map(response.body)

    @deferred_api
    async def consumer_connection(self, addr: str, group: str) -> dict[str, Any]:
        """GET_CONSUMER_CONNECTION_LIST (ConsumerConnection as a dict)."""
        response = await self.broker_call(
            addr, RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": group}
        )
        obj = fastjson.loads(response.body)
        return obj if isinstance(obj, dict) else {}

    @deferred_api
    async def producer_connection(self, addr: str, group: str) -> list[dict[str, Any]]:
        """GET_PRODUCER_CONNECTION_LIST's connections."""
        response = await self.broker_call(
            addr, RequestCode.GET_PRODUCER_CONNECTION_LIST, {"producerGroup": group}
        )
        return list(fastjson.loads(response.body).get("connectionSet") or [])

    @deferred_api
    async def update_subscription_group(self, addr: str, config: Mapping[str, Any]) -> None:
        """UPDATE_AND_CREATE_SUBSCRIPTIONGROUP with a SubscriptionGroupConfig body."""
        body = fastjson.dumps(dict(sorted(config.items())))
        await self.broker_call(addr, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=body)

    @deferred_api
    async def delete_subscription_group(
        self, addr: str, group: str, remove_offset: bool = False
    ) -> None:
        """DELETE_SUBSCRIPTIONGROUP."""
        await self.broker_call(
            addr,
            RequestCode.DELETE_SUBSCRIPTIONGROUP,
            {"groupName": group, "removeOffset": remove_offset},
        )

    @deferred_api
    async def reset_offset_by_time(
        self, addr: str, topic: str, group: str, timestamp_ms: int, force: bool
    ) -> dict[QueueKey, int]:
        """INVOKE_BROKER_TO_RESET_OFFSET (the broker tells the live consumers).

        When the group is not online (206) the offsets are set directly: each queue's offset at
        ``timestamp_ms`` (−1 = max) goes to the broker with UPDATE_CONSUMER_OFFSET, like mqadmin's
        fallback.
        """
        response = await self.broker_call(
            addr,
            RequestCode.INVOKE_BROKER_TO_RESET_OFFSET,
            {"topic": topic, "group": group, "timestamp": timestamp_ms, "isForce": force},
            ok=(ResponseCode.SUCCESS, ResponseCode.CONSUMER_NOT_ONLINE),
        )
        if response.code == ResponseCode.SUCCESS:
            return {k: int(v) for k, v in mq_map(response.body).items()}
        _, stats = await self.consume_stats(addr, group, topic)
        result: dict[QueueKey, int] = {}
        for key, entry in sorted(stats.items(), key=lambda kv: kv[0].queue_id):
            if timestamp_ms == -1:
                target = int(entry.get("brokerOffset", 0))
            else:
                found = await self.broker_call(
                    addr,
                    RequestCode.SEARCH_OFFSET_BY_TIMESTAMP,
                    {"topic": topic, "queueId": key.queue_id, "timestamp": timestamp_ms},
                )
                target = int(found.ext_fields.get("offset", "0"))
            current = int(entry.get("consumerOffset", 0))
            if not force and target >= current:
                target = current
            await self.broker_call(
                addr,
                RequestCode.UPDATE_CONSUMER_OFFSET,
                {
                    "consumerGroup": group,
                    "topic": topic,
                    "queueId": key.queue_id,
                    "commitOffset": target,
                },
            )
            result[key] = target
        return result

    @deferred_api
    async def view_message(self, msg_id: str) -> MessageExt:
        """VIEW_MESSAGE_BY_ID at the store host encoded in the offset message id."""
        try:
            decoded = decode_offset_msg_id(msg_id)
        except ValueError as e:
            raise MQClientError(f"{msg_id} is not an offset message id: {e}") from e
        addr = f"{decoded.host}:{decoded.port}"
        response = await self.broker_call(
            addr, RequestCode.VIEW_MESSAGE_BY_ID, {"offset": decoded.offset}
        )
        return decode_messages(response.body)[0]

    @deferred_api
    async def query_messages(
        self,
        topic: str,
        key: str,
        max_num: int = 64,
        begin_ms: int = 0,
        end_ms: int = 2**63 - 1,
        unique: bool = False,
    ) -> list[MessageExt]:
        """QUERY_MESSAGE on every master of ``topic`` (by key, or by UNIQ_KEY when ``unique``)."""
        found: list[MessageExt] = []
        for _, addr in await self.topic_masters(topic):
            request = new_request(
                RequestCode.QUERY_MESSAGE,
                {
                    "topic": topic,
                    "key": key,
                    "maxNum": max_num,
                    "beginTimestamp": begin_ms,
                    "endTimestamp": end_ms,
                },
            )
            request.ext_fields["_UNIQUE_KEY_QUERY"] = "true" if unique else "false"
            response = await self._invoke(addr, request)
            if response.code == ResponseCode.QUERY_NOT_FOUND:
                continue
            _check(response, addr)
            for msg in decode_messages(response.body):
                if unique:
                    if msg.properties.get("UNIQ_KEY") == key:
                        found.append(msg)
                elif key in (msg.properties.get("KEYS") or "").split(" "):
                    found.append(msg)
        return found

    @deferred_api
    async def broker_config(self, addr: str) -> tuple[str, dict[str, str]]:
        """GET_BROKER_CONFIG: ``(version JSON, properties)`` in the broker's order."""
        response = await self.broker_call(addr, RequestCode.GET_BROKER_CONFIG)
        text = response.body.decode("utf-8", "replace")
        return response.ext_fields.get("version", ""), parse_properties(text)

    @deferred_api
    async def update_broker_config(self, addr: str, props: Mapping[str, str]) -> None:
        """UPDATE_BROKER_CONFIG with Properties text."""
        body = "".join(f"{k}={v}\n" for k, v in props.items()).encode("utf-8")
        await self.broker_call(addr, RequestCode.UPDATE_BROKER_CONFIG, body=body)

    # -- more broker operations (rmq.broker.admin_ops on rmq; AdminBrokerProcessor on Java) --

    @deferred_api
    async def query_consume_time_span(
        self, addr: str, topic: str, group: str
    ) -> list[dict[str, Any]]:
        """QUERY_CONSUME_TIME_SPAN: one QueueTimeSpan dict per write queue of ``topic``."""
        response = await self.broker_call(
            addr, RequestCode.QUERY_CONSUME_TIME_SPAN, {"topic": topic, "group": group}
        )
        return list(fastjson.loads(response.body).get("consumeTimeSpanSet") or [])

    @deferred_api
    async def clone_group_offset(
        self, addr: str, src_group: str, dest_group: str, topic: str, offline: bool = False
    ) -> None:
        """CLONE_GROUP_OFFSET: copy ``src_group``'s offsets on ``topic`` to ``dest_group``."""
        await self.broker_call(
            addr,
            RequestCode.CLONE_GROUP_OFFSET,
            {"srcGroup": src_group, "destGroup": dest_group, "topic": topic, "offline": offline},
        )

    @deferred_api
    async def view_broker_stats_data(
        self, addr: str, stats_name: str, stats_key: str
    ) -> dict[str, dict[str, Any]]:
        """VIEW_BROKER_STATS_DATA: ``{"statsMinute"|"statsHour"|"statsDay": {sum, tps, avgpt}}``;
        MQBrokerError(1) when the item has no data."""
        response = await self.broker_call(
            addr,
            RequestCode.VIEW_BROKER_STATS_DATA,
            {"statsName": stats_name, "statsKey": stats_key},
        )
        obj = fastjson.loads(response.body)
        return obj if isinstance(obj, dict) else {}

    @deferred_api
    async def broker_consume_stats(self, addr: str, is_order: bool = False) -> dict[str, Any]:
        """GET_BROKER_CONSUME_STATS (ConsumeStatsList as a dict; offset tables keyed by
        :class:`QueueKey`)."""
        response = await self.broker_call(
            addr, RequestCode.GET_BROKER_CONSUME_STATS, {"isOrder": is_order}
        )
        obj = fastjson.loads(response.body)
        for entry in obj.get("consumeStatsList") or []:
            for stats in entry.values():
                for one in stats:
                    one["offsetTable"] = mq_map(fastjson.dumps(one))
        return obj if isinstance(obj, dict) else {}

    @deferred_api
    async def consumer_status(
        self, addr: str, topic: str, group: str, client_id: str = ""
    ) -> dict[str, dict[QueueKey, int]]:
        """INVOKE_BROKER_TO_GET_CONSUMER_STATUS: each live consumer's queue offsets."""
        response = await self.broker_call(
            addr,
            RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS,
            {"topic": topic, "group": group, "clientAddr": client_id or None},
        )
        table = fastjson.loads(response.body).get("consumerTable") or {}
        return {
            str(client): {
                k: int(v) for k, v in mq_map(fastjson.dumps({"offsetTable": queues})).items()
            }
            for client, queues in table.items()
        }

    @deferred_api
    async def all_producer_info(self, addr: str) -> dict[str, list[dict[str, Any]]]:
        """GET_ALL_PRODUCER_INFO: producer group → ProducerInfo dicts."""
        response = await self.broker_call(addr, RequestCode.GET_ALL_PRODUCER_INFO)
        data = fastjson.loads(response.body).get("data") or {}
        return {str(g): list(v or []) for g, v in data.items()}

    @deferred_api
    async def query_topic_consume_by_who(self, addr: str, topic: str) -> list[str]:
        """QUERY_TOPIC_CONSUME_BY_WHO: groups with offsets or subscriptions on ``topic``."""
        response = await self.broker_call(
            addr, RequestCode.QUERY_TOPIC_CONSUME_BY_WHO, {"topic": topic}
        )
        return [str(g) for g in fastjson.loads(response.body).get("groupList") or []]

    @deferred_api
    async def system_topics(self, addr: str) -> list[str]:
        """GET_SYSTEM_TOPIC_LIST_FROM_BROKER."""
        response = await self.broker_call(addr, RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_BROKER)
        return [str(t) for t in fastjson.loads(response.body).get("topicList") or []]

    @deferred_api
    async def broker_maintenance(self, addr: str, code: int) -> None:
        """CLEAN_EXPIRED_CONSUMEQUEUE, CLEAN_UNUSED_TOPIC or DELETE_EXPIRED_COMMITLOG."""
        await self.broker_call(addr, code)

    @deferred_api
    async def resume_check_half_message(self, msg_id: str) -> None:
        """RESUME_CHECK_HALF_MESSAGE at the store host encoded in the offset message id."""
        try:
            decoded = decode_offset_msg_id(msg_id)
        except ValueError as e:
            raise MQClientError(f"{msg_id} is not an offset message id: {e}") from e
        addr = f"{decoded.host}:{decoded.port}"
        await self.broker_call(addr, RequestCode.RESUME_CHECK_HALF_MESSAGE, {"msgId": msg_id})

    @deferred_api
    async def query_consume_queue(
        self, addr: str, topic: str, queue_id: int, index: int, count: int, group: str | None
    ) -> dict[str, Any]:
        """QUERY_CONSUME_QUEUE: QueryConsumeQueueResponseBody as a dict (empty when the broker
        answers without a body: the index is past the queue's end)."""
        response = await self.broker_call(
            addr,
            RequestCode.QUERY_CONSUME_QUEUE,
            {
                "topic": topic,
                "queueId": queue_id,
                "index": index,
                "count": count,
                "consumerGroup": group,
            },
        )
        if not response.body:
            return {"remark": response.remark or ""}
        obj = fastjson.loads(response.body)
        return obj if isinstance(obj, dict) else {}
