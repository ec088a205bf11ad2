"""``rmq-admin``: mqadmin-style administration of rmq (and Apache RocketMQ 4.x) over the wire.

::

    rmq-admin COMMAND [-n host:port[;host:port]] [options]

The NameServer address comes from ``-n`` or the ``NAMESRV_ADDR`` environment variable. Output is
plain text tables like mqadmin's. Any failure prints ``rmq-admin COMMAND: <reason>`` on stderr
(naming the NameServer or broker address that could not be reached or refused the request) and
exits with status 1. ``docs/admin.md`` shows every command with an example.

:func:`run` is the testable entry point (reactor, argv, output streams → Deferred exit code);
:func:`main` runs it with ``twisted.internet.task.react``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TextIO

from twisted.internet.defer import Deferred, succeed
from twisted.python import usage

from rmq.admin.api import DLQ_PREFIX, ORDER_TOPIC_CONFIG, RETRY_PREFIX, MQAdmin
from rmq.common.errors import MQBrokerError, RMQError
from rmq.common.message import MessageExt
from rmq.common.route import perm_to_string
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory
from rmq.remoting.codes import RequestCode

Out = Callable[[str], object]
Handler = Callable[[MQAdmin, "CommandOptions", Out], Awaitable[None]]


class CommandOptions(usage.Options):
    """Options every command takes."""

    optParameters: list[list[Any]] = [
        ["namesrvAddr", "n", None, "NameServer address(es) host:port;host:port ($NAMESRV_ADDR)"],
        ["timeoutSeconds", None, "5", "seconds to wait for each answer"],
    ]

    def need(self, *names: str) -> None:
        """Raise UsageError unless every option in ``names`` was given."""
        for name in names:
            if self[name] in (None, ""):
                raise usage.UsageError(f"option --{name} is required")

    def need_one(self, *names: str) -> None:
        """Raise UsageError unless at least one option in ``names`` was given."""
        if all(self[n] in (None, "") for n in names):
            raise usage.UsageError("one of " + ", ".join(f"--{n}" for n in names) + " is required")


def _bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"expected true or false, not {text!r}")
    return lowered == "true"


class UpdateTopicOptions(CommandOptions):
    """Options of updateTopic."""

    optParameters = [
        ["topic", "t", None, "topic name"],
        ["brokerAddr", "b", None, "create on this broker"],
        ["clusterName", "c", None, "create on every master of this cluster"],
        ["readQueueNums", "r", 8, "read queue count", int],
        ["writeQueueNums", "w", 8, "write queue count", int],
        ["perm", "p", 6, "permission (2 W, 4 R, 6 RW)", int],
        ["order", "o", False, "ordered topic (true/false)", _bool],
    ]


class DeleteTopicOptions(CommandOptions):
    """Options of deleteTopic."""

    optParameters = [
        ["topic", "t", None, "topic name"],
        ["clusterName", "c", None, "delete from every master of this cluster"],
    ]


class TopicOptions(CommandOptions):
    """Options of topicRoute, topicStatus."""

    optParameters = [["topic", "t", None, "topic name"]]


class BrokerOrClusterOptions(CommandOptions):
    """Options of brokerStatus, getBrokerConfig: one broker or every master of a cluster."""

    optParameters = [
        ["brokerAddr", "b", None, "broker address host:port"],
        ["clusterName", "c", None, "every master of this cluster"],
    ]


class GroupOptions(CommandOptions):
    """Options of consumerProgress, consumerConnection."""

    optParameters = [
        ["groupName", "g", None, "consumer group"],
        ["topic", "t", None, "only this topic"],
    ]


class ProducerConnectionOptions(CommandOptions):
    """Options of producerConnection."""

    optParameters = [
        ["producerGroup", "g", None, "producer group"],
        ["topic", "t", None, "a topic the group sends to (finds the brokers)"],
    ]


class UpdateSubGroupOptions(BrokerOrClusterOptions):
    """Options of updateSubGroup (SubscriptionGroupConfig fields)."""

    optParameters = [
        ["groupName", "g", None, "consumer group"],
        ["consumeEnable", "s", True, "consume enabled", _bool],
        ["consumeFromMinEnable", "m", False, "consume from min offset", _bool],
        ["consumeBroadcastEnable", "d", False, "broadcast consumption allowed", _bool],
        ["retryQueueNums", "q", 1, "retry queue count", int],
        ["retryMaxTimes", "r", 16, "max retries before the DLQ", int],
        ["brokerId", "i", 0, "consume from this broker id", int],
        ["whichBrokerWhenConsumeSlowly", "w", 1, "broker id when slow", int],
        ["notifyConsumerIdsChangedEnable", "a", True, "notify on member change", _bool],
    ]


class DeleteSubGroupOptions(BrokerOrClusterOptions):
    """Options of deleteSubGroup."""

    optParameters = [
        ["groupName", "g", None, "consumer group"],
        ["removeOffset", "r", False, "also drop the group's offsets", _bool],
    ]


class ResetOffsetOptions(CommandOptions):
    """Options of resetOffsetByTime."""

    optParameters = [
        ["group", "g", None, "consumer group"],
        ["topic", "t", None, "topic"],
        ["timestamp", "s", None, "now | -1 (max) | epoch ms | yyyy-MM-dd#HH:mm:ss:SSS"],
        ["force", "f", True, "also move offsets forward (true/false)", _bool],
    ]


class QueryMsgByIdOptions(CommandOptions):
    """Options of queryMsgById."""

    optParameters = [
        ["msgId", "i", None, "offset message id (or unique id with --topic)"],
        ["topic", "t", None, "topic, to look the id up as a unique (client) id"],
    ]


class QueryMsgByKeyOptions(CommandOptions):
    """Options of queryMsgByKey."""

    optParameters = [
        ["topic", "t", None, "topic"],
        ["msgKey", "k", None, "message key"],
        ["beginTimestamp", "b", 0, "from (epoch ms)", int],
        ["endTimestamp", "e", 2**63 - 1, "until (epoch ms)", int],
        ["maxNum", "m", 64, "max messages per broker", int],
    ]


class UpdateBrokerConfigOptions(BrokerOrClusterOptions):
    """Options of updateBrokerConfig."""

    optParameters = [["key", "k", None, "config key"], ["value", "v", None, "new value"]]


class KvOptions(CommandOptions):
    """Options of getKvConfig, deleteKvConfig."""

    optParameters = [
        ["namespace", "s", None, "KV namespace"],
        ["key", "k", None, "key"],
    ]


class UpdateKvOptions(KvOptions):
    """Options of updateKvConfig."""

    optParameters = [["value", "v", None, "value"]]


class ConsumeTimeSpanOptions(CommandOptions):
    """Options of consumeTimeSpan."""

    optParameters = [
        ["topic", "t", None, "topic"],
        ["group", "g", None, "consumer group"],
    ]


class CloneGroupOffsetOptions(CommandOptions):
    """Options of cloneGroupOffset (mqadmin's)."""

    optParameters = [
        ["srcGroup", "s", None, "source consumer group"],
        ["destGroup", "d", None, "destination consumer group"],
        ["topic", "t", None, "topic"],
        ["offline", "o", False, "the group or the topic is offline (true/false)", _bool],
    ]


class StatsAllOptions(CommandOptions):
    """Options of statsAll."""

    optFlags = [["activeTopic", "a", "print active topics only"]]
    optParameters = [["topic", "t", None, "print this topic only"]]


class BrokerConsumeStatsOptions(CommandOptions):
    """Options of brokerConsumeStats."""

    optParameters = [
        ["brokerAddr", "b", None, "broker address"],
        ["level", "l", 0, "print queues whose diff is at least this", int],
        ["order", "o", False, "ordered topics only (true/false)", _bool],
    ]


class GetConsumerStatusOptions(CommandOptions):
    """Options of getConsumerStatus."""

    optParameters = [
        ["group", "g", None, "consumer group"],
        ["topic", "t", None, "topic"],
        ["originClientId", "i", None, "only this consumer client id"],
    ]


class BrokerOrClusterOrAllOptions(CommandOptions):
    """Options of cleanExpiredCQ, cleanUnusedTopic, deleteExpiredCommitLog (neither = every
    master of every cluster, as mqadmin)."""

    optParameters = [
        ["brokerAddr", "b", None, "broker address host:port"],
        ["cluster", "c", None, "every master of this cluster"],
    ]


class ResumeHalfOptions(CommandOptions):
    """Options of resumeCheckHalfMessage."""

    optParameters = [["msgId", "i", None, "offset message id of the half message"]]


class QueryCqOptions(CommandOptions):
    """Options of queryCq (mqadmin's)."""

    optParameters = [
        ["topic", "t", None, "topic"],
        ["queue", "q", None, "queue id", int],
        ["index", "i", None, "first queue index", int],
        ["count", "c", 10, "how many units", int],
        ["broker", "b", None, "broker address (default: the topic's first master)"],
        ["consumer", "g", None, "consumer group (evaluate its subscription)"],
    ]


class ProducerOptions(CommandOptions):
    """Options of producer."""

    optParameters = [["broker", "b", None, "broker address"]]


# ---------------------------------------------------------------------------------------------
# helpers


def _ts(ms: int) -> str:
    """Local time like mqadmin's ``UtilAll.timeMillisToHumanString2``."""
    if ms <= 0:
        return "N/A"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000.0)) + f",{ms % 1000:03d}"


def parse_timestamp(text: str, now_ms: int) -> int:
    """``now``, ``-1``, epoch milliseconds, or ``yyyy-MM-dd#HH:mm:ss:SSS`` (local time)."""
    text = text.strip()
    if text == "now":
        return now_ms
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        date_part, _, millis = text.rpartition(":")
        parsed = time.strptime(date_part, "%Y-%m-%d#%H:%M:%S")
        return int(time.mktime(parsed)) * 1000 + int(millis)
    except ValueError as e:
        raise usage.UsageError(
            f"bad timestamp {text!r}: use now, -1, epoch ms or yyyy-MM-dd#HH:mm:ss:SSS"
        ) from e


async def _targets(admin: MQAdmin, opts: CommandOptions) -> list[tuple[str, str]]:
    """``(label, broker address)`` pairs from ``--brokerAddr`` or ``--clusterName``."""
    if opts["brokerAddr"]:
        return [(opts["brokerAddr"], opts["brokerAddr"])]
    return list(await admin.master_addrs(opts["clusterName"]))


async def _all_masters(admin: MQAdmin) -> list[tuple[str, str]]:
    info = await admin.cluster_info()
    out = []
    for name, data in sorted(info.broker_addr_table.items()):
        addr = data.master_addr()
        if addr:
            out.append((name, addr))
    return out


def _row(widths: Sequence[int], values: Sequence[object]) -> str:
    cells = [f"{str(v):<{w}}" for w, v in zip(widths, values, strict=False)]
    return "  ".join(cells).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# commands


async def update_topic(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """updateTopic: create or change a topic on a broker or every master of a cluster."""
    opts.need("topic")
    opts.need_one("brokerAddr", "clusterName")
    topic = opts["topic"]
    targets = await _targets(admin, opts)
    for _, addr in targets:
        await admin.create_topic(
            addr,
            topic,
            opts["readQueueNums"],
            opts["writeQueueNums"],
            opts["perm"],
            opts["order"],
        )
        out(f"create topic to {addr} success.\n")
    out(
        f"TopicConfig [topicName={topic}, readQueueNums={opts['readQueueNums']}, "
        f"writeQueueNums={opts['writeQueueNums']}, perm={perm_to_string(opts['perm'])}, "
        f"topicFilterType=SINGLE_TAG, topicSysFlag=0, order={str(opts['order']).lower()}]\n"
    )
    if opts["order"] and opts["clusterName"]:
        names = [name for name, _ in targets]
        conf = ";".join(f"{name}:{opts['writeQueueNums']}" for name in names)
        await admin.put_kv_config(ORDER_TOPIC_CONFIG, topic, conf)
        out(f"set cluster orderConf. isOrder=true, orderConf=[{conf}]\n")


async def delete_topic(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """deleteTopic: from every master of the cluster, then from the NameServers."""
    opts.need("topic", "clusterName")
    await admin.delete_topic(opts["topic"], opts["clusterName"])
    out(f"delete topic [{opts['topic']}] from cluster [{opts['clusterName']}] success.\n")
    out(f"delete topic [{opts['topic']}] from NameServer success.\n")


async def topic_list(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """topicList: every topic the NameServer knows."""
    for topic in sorted(await admin.topic_list()):
        out(topic + "\n")


async def topic_route(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """topicRoute: the route data as JSON."""
    opts.need("topic")
    route = await admin.topic_route(opts["topic"])
    out(json.dumps(route.to_dict(), indent=2, sort_keys=True) + "\n")


async def topic_status(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """topicStatus: min/max offset and last update of every queue."""
    opts.need("topic")
    widths = (32, 4, 20, 20)
    out(
        _row(widths + (0,), ("#Broker Name", "#QID", "#Min Offset", "#Max Offset", "#Last Updated"))
    )
    for name, addr in await admin.topic_masters(opts["topic"]):
        stats = await admin.topic_stats(addr, opts["topic"])
        for key in sorted(stats, key=lambda k: k.queue_id):
            s = stats[key]
            out(
                _row(
                    widths + (0,),
                    (
                        name,
                        key.queue_id,
                        s.get("minOffset", 0),
                        s.get("maxOffset", 0),
                        _ts(int(s.get("lastUpdateTimestamp", 0))),
                    ),
                )
            )


async def cluster_list(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """clusterList: brokers of every cluster with their version and load."""
    info = await admin.cluster_info()
    widths = (22, 22, 4, 22, 10, 22, 22, 8)
    out(
        _row(
            widths + (0,),
            (
                "#Cluster Name",
                "#Broker Name",
                "#BID",
                "#Addr",
                "#Version",
                "#InTPS(LOAD)",
                "#OutTPS(LOAD)",
                "#Hour",
                "#SPACE",
            ),
        )
    )
    now = int(time.time() * 1000)
    for cluster in sorted(info.cluster_addr_table):
        for name in sorted(info.cluster_addr_table[cluster]):
            data = info.broker_addr_table.get(name)
            if data is None:
                continue
            for bid, addr in sorted(data.broker_addrs.items()):
                table = await admin.runtime_info(addr)
                in_tps = float((table.get("putTps") or "0").split()[0])
                out_tps = float((table.get("getTransferedTps") or "0").split()[0])
                earliest = int(table.get("earliestMessageTimeStamp", "-1") or -1)
                hours = (now - earliest) / 3_600_000 if earliest > 0 else 0.0
                out(
                    _row(
                        widths + (0,),
                        (
                            cluster,
                            name,
                            bid,
                            addr,
                            table.get("brokerVersionDesc", ""),
                            f"{in_tps:9.2f}",
                            f"{out_tps:9.2f}",
                            f"{hours:.2f}",
                            table.get("commitLogDiskRatio", "-"),
                        ),
                    )
                )


async def broker_status(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """brokerStatus: the broker's runtime figures (GET_BROKER_RUNTIME_INFO)."""
    opts.need_one("brokerAddr", "clusterName")
    targets = await _targets(admin, opts)
    for _, addr in targets:
        table = await admin.runtime_info(addr)
        prefix = f"{addr:<24}" if len(targets) > 1 else ""
        for key in sorted(table):
            out(f"{prefix}{key:<36}: {table[key]}\n")


async def consumer_progress(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """consumerProgress: broker vs consumer offset of every queue of a group."""
    opts.need("groupName")
    group = opts["groupName"]
    widths = (32, 22, 4, 14, 16, 10)
    out(
        _row(
            widths + (0,),
            (
                "#Topic",
                "#Broker Name",
                "#QID",
                "#Broker Offset",
                "#Consumer Offset",
                "#Diff",
                "#LastTime",
            ),
        )
    )
    tps = 0.0
    diff_total = 0
    for name, addr in await _all_masters(admin):
        group_tps, table = await admin.consume_stats(addr, group, opts["topic"])
        tps += group_tps
        for key in sorted(table, key=lambda k: (k.topic, k.queue_id)):
            s = table[key]
            diff = int(s.get("brokerOffset", 0)) - int(s.get("consumerOffset", 0))
            diff_total += diff
            out(
                _row(
                    widths + (0,),
                    (
                        key.topic,
                        name,
                        key.queue_id,
                        s.get("brokerOffset", 0),
                        s.get("consumerOffset", 0),
                        diff,
                        _ts(int(s.get("lastTimestamp", 0))),
                    ),
                )
            )
    out(f"\nConsume TPS: {tps:.2f}\nDiff Total: {diff_total}\n")


async def consumer_connection(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """consumerConnection: live members and subscriptions of a consumer group."""
    opts.need("groupName")
    group = opts["groupName"]
    last_error: MQBrokerError | None = None
    for _, addr in await _all_masters(admin):
        try:
            conn = await admin.consumer_connection(addr, group)
        except MQBrokerError as e:
            last_error = e
            continue
        widths = (4, 40, 24, 10)
        out(_row(widths + (0,), ("#", "#ClientId", "#ClientAddr", "#Language", "#Version")))
        for i, c in enumerate(conn.get("connectionSet") or [], 1):
            out(
                _row(
                    widths + (0,),
                    (
                        f"{i:03d}",
                        c.get("clientId"),
                        c.get("clientAddr"),
                        c.get("language"),
                        c.get("version"),
                    ),
                )
            )
        out("\nBelow is subscription:\n")
        out(_row((4, 40, 0), ("#", "#Topic", "#SubExpression")))
        subs = conn.get("subscriptionTable") or {}
        for i, topic in enumerate(sorted(subs), 1):
            out(_row((4, 40, 0), (f"{i:03d}", topic, subs[topic].get("subString"))))
        out(
            f"\nConsumeType: {conn.get('consumeType')}\n"
            f"MessageModel: {conn.get('messageModel')}\n"
            f"ConsumeFromWhere: {conn.get('consumeFromWhere')}\n"
        )
        return
    if last_error is not None:
        raise last_error
    raise RMQError(f"no broker found for consumer group {group}")


async def producer_connection(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """producerConnection: live producers of a group (on the brokers of a topic)."""
    opts.need("producerGroup", "topic")
    i = 0
    for _, addr in await admin.topic_masters(opts["topic"]):
        for c in await admin.producer_connection(addr, opts["producerGroup"]):
            i += 1
            out(
                f"{i:04d}  {c.get('clientId', ''):<40} {c.get('clientAddr', ''):<24} "
                f"{c.get('language', ''):<8} {c.get('version', '')}\n"
            )


async def update_sub_group(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """updateSubGroup: create or change a subscription group."""
    opts.need("groupName")
    opts.need_one("brokerAddr", "clusterName")
    config = {
        "brokerId": opts["brokerId"],
        "consumeBroadcastEnable": opts["consumeBroadcastEnable"],
        "consumeEnable": opts["consumeEnable"],
        "consumeFromMinEnable": opts["consumeFromMinEnable"],
        "groupName": opts["groupName"],
        "notifyConsumerIdsChangedEnable": opts["notifyConsumerIdsChangedEnable"],
        "retryMaxTimes": opts["retryMaxTimes"],
        "retryQueueNums": opts["retryQueueNums"],
        "whichBrokerWhenConsumeSlowly": opts["whichBrokerWhenConsumeSlowly"],
    }
    for _, addr in await _targets(admin, opts):
        await admin.update_subscription_group(addr, config)
        out(f"create subscription group to {addr} success.\n")
    out(
        "SubscriptionGroupConfig ["
        + ", ".join(
            f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in config.items()
        )
        + "]\n"
    )


async def delete_sub_group(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """deleteSubGroup: drop a group (with -c also its retry and DLQ topics)."""
    opts.need("groupName")
    opts.need_one("brokerAddr", "clusterName")
    group = opts["groupName"]
    for _, addr in await _targets(admin, opts):
        await admin.delete_subscription_group(addr, group, opts["removeOffset"])
        out(f"delete subscription group [{group}] from broker [{addr}] success.\n")
    if opts["clusterName"]:
        for topic in (RETRY_PREFIX + group, DLQ_PREFIX + group):
            await admin.delete_topic(topic, opts["clusterName"])
            out(f"delete topic [{topic}] from cluster [{opts['clusterName']}] success.\n")


async def reset_offset_by_time(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """resetOffsetByTime: move a group's offsets on a topic to a point in time."""
    opts.need("group", "topic", "timestamp")
    ts = parse_timestamp(opts["timestamp"], int(time.time() * 1000))
    out(
        f"rollback consumer offset by specified group[{opts['group']}], topic[{opts['topic']}], "
        f"force[{str(opts['force']).lower()}], timestamp(string)[{opts['timestamp']}], "
        f"timestamp(long)[{ts}]\n"
    )
    widths = (32, 16)
    out(_row(widths + (0,), ("#brokerName", "#queueId", "#offset")))
    for _, addr in await admin.topic_masters(opts["topic"]):
        table = await admin.reset_offset_by_time(
            addr, opts["topic"], opts["group"], ts, opts["force"]
        )
        for key in sorted(table, key=lambda k: (k.broker_name, k.queue_id)):
            out(_row(widths + (0,), (key.broker_name, key.queue_id, table[key])))


def _print_message(msg: MessageExt, out: Out) -> None:
    rows = (
        ("OffsetID:", msg.offset_msg_id),
        ("Topic:", msg.topic),
        ("Tags:", f"[{msg.properties.get('TAGS', '')}]"),
        ("Keys:", f"[{msg.properties.get('KEYS', '')}]"),
        ("Queue ID:", msg.queue_id),
        ("Queue Offset:", msg.queue_offset),
        ("CommitLog Offset:", msg.commit_log_offset),
        ("Reconsume Times:", msg.reconsume_times),
        ("Born Timestamp:", _ts(msg.born_timestamp)),
        ("Store Timestamp:", _ts(msg.store_timestamp)),
        ("Born Host:", msg.born_host),
        ("Store Host:", msg.store_host),
        ("System Flag:", msg.sys_flag),
        ("Properties:", json.dumps(msg.properties, sort_keys=True, ensure_ascii=False)),
        ("Message Body:", msg.body.decode("utf-8", "replace")),
    )
    for label, value in rows:
        out(f"{label:<20} {value}\n")


async def query_msg_by_id(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """queryMsgById: an offset message id, or a unique id together with --topic."""
    opts.need("msgId")
    if opts["topic"]:
        found = await admin.query_messages(opts["topic"], opts["msgId"], unique=True)
        if not found:
            raise RMQError(f"no message with id {opts['msgId']} in topic {opts['topic']}")
        for msg in found:
            _print_message(msg, out)
        return
    _print_message(await admin.view_message(opts["msgId"]), out)


async def query_msg_by_key(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """queryMsgByKey: messages of a topic carrying a key."""
    opts.need("topic", "msgKey")
    found = await admin.query_messages(
        opts["topic"],
        opts["msgKey"],
        opts["maxNum"],
        opts["beginTimestamp"],
        opts["endTimestamp"],
    )
    widths = (40, 4, 10)
    out(_row(widths + (0,), ("#Message ID", "#QID", "#Offset", "#Offset ID")))
    for msg in found:
        unique = msg.properties.get("UNIQ_KEY") or msg.offset_msg_id
        out(_row(widths + (0,), (unique, msg.queue_id, msg.queue_offset, msg.offset_msg_id)))


async def get_broker_config(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """getBrokerConfig: every config key of a broker (or of every master of a cluster)."""
    opts.need_one("brokerAddr", "clusterName")
    for _, addr in await _targets(admin, opts):
        _, props = await admin.broker_config(addr)
        out(f"============{addr}============\n")
        for key in sorted(props):
            out(f"{key:<50}=  {props[key]}\n")


async def update_broker_config(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """updateBrokerConfig: change one key on a running broker (or every master of a cluster)."""
    opts.need("key", "value")
    opts.need_one("brokerAddr", "clusterName")
    for _, addr in await _targets(admin, opts):
        await admin.update_broker_config(addr, {opts["key"]: opts["value"]})
        out(f"update broker config success, {addr}\n")


async def update_kv_config(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """updateKvConfig: set a NameServer KV entry."""
    opts.need("namespace", "key", "value")
    await admin.put_kv_config(opts["namespace"], opts["key"], opts["value"])
    out("update kv config in namespace success.\n")


async def get_kv_config(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """getKvConfig: read a NameServer KV entry."""
    opts.need("namespace", "key")
    out(await admin.get_kv_config(opts["namespace"], opts["key"]) + "\n")


async def delete_kv_config(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """deleteKvConfig: remove a NameServer KV entry."""
    opts.need("namespace", "key")
    await admin.delete_kv_config(opts["namespace"], opts["key"])
    out("delete kv config from namespace success.\n")


async def consume_time_span(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """consumeTimeSpan: per queue the oldest, newest and last consumed store time and the delay
    of the first unconsumed message (QUERY_CONSUME_TIME_SPAN)."""
    opts.need("topic", "group")
    widths = (22, 4, 24, 24, 24)
    out(
        _row(
            widths + (0,),
            ("#Broker Name", "#QID", "#MinTime", "#MaxTime", "#ConsumeTime", "#Delay(ms)"),
        )
    )
    for name, addr in await admin.topic_masters(opts["topic"]):
        spans = await admin.query_consume_time_span(addr, opts["topic"], opts["group"])
        for span in sorted(spans, key=lambda s: int(s["messageQueue"]["queueId"])):
            out(
                _row(
                    widths + (0,),
                    (
                        name,
                        span["messageQueue"]["queueId"],
                        _ts(int(span.get("minTimeStamp", 0))),
                        _ts(int(span.get("maxTimeStamp", 0))),
                        _ts(int(span.get("consumeTimeStamp", 0))),
                        span.get("delayTime", 0),
                    ),
                )
            )


async def clone_group_offset(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """cloneGroupOffset: copy a group's offsets on a topic to another group (CLONE_GROUP_OFFSET
    on every master of the topic)."""
    opts.need("srcGroup", "destGroup", "topic")
    for _, addr in await admin.topic_masters(opts["topic"]):
        await admin.clone_group_offset(
            addr, opts["srcGroup"], opts["destGroup"], opts["topic"], opts["offline"]
        )
    out(
        f"clone group offset success. srcGroup[{opts['srcGroup']}], "
        f"destGroup=[{opts['destGroup']}], topic[{opts['topic']}]\n"
    )


def _sum_24h(data: Mapping[str, Any]) -> int:
    """mqadmin's compute24HourSum: the day sum, else the hour's, else the minute's."""
    for window in ("statsDay", "statsHour", "statsMinute"):
        total = int((data.get(window) or {}).get("sum") or 0)
        if total:
            return total
    return 0


async def _stats_of(
    admin: MQAdmin, masters: Sequence[tuple[str, str]], name: str, key: str
) -> tuple[float, int]:
    """Minute TPS and 24-hour sum of one stats item over ``masters`` (missing items count 0)."""
    tps = 0.0
    total = 0
    for _, addr in masters:
        try:
            data = await admin.view_broker_stats_data(addr, name, key)
        except MQBrokerError:
            continue
        tps += float((data.get("statsMinute") or {}).get("tps") or 0.0)
        total += _sum_24h(data)
    return tps, total


async def stats_all(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """statsAll: per topic and consumer group the backlog, in/out TPS and 24-hour message counts
    (VIEW_BROKER_STATS_DATA TOPIC_PUT_NUMS and GROUP_GET_NUMS on every master)."""
    out(
        f"{'#Topic':<64}  {'#Consumer Group':<64} {'#Accumulation':>12} {'#InTPS':>11} "
        f"{'#OutTPS':>11} {'#InMsg24Hour':>14} {'#OutMsg24Hour':>14}\n"
    )
    active = bool(opts["activeTopic"])
    for topic in sorted(await admin.topic_list()):
        if topic.startswith((RETRY_PREFIX, DLQ_PREFIX)):
            continue
        if opts["topic"] and topic != opts["topic"]:
            continue
        try:
            await _stats_topic(admin, topic, active, out)
        except RMQError:
            continue  # like mqadmin: a topic that cannot be examined is left out


async def _stats_topic(admin: MQAdmin, topic: str, active: bool, out: Out) -> None:
    """statsAll's lines of one topic."""
    masters = await admin.topic_masters(topic)
    groups: set[str] = set()
    for _, addr in masters:
        groups.update(await admin.query_topic_consume_by_who(addr, topic))
    in_tps, in_msgs = await _stats_of(admin, masters, "TOPIC_PUT_NUMS", topic)
    if not groups:
        if not active or in_msgs > 0:
            out(
                f"{topic:<64}  {'':<64} {0:>12d} {in_tps:>11.2f} {'':>11} {in_msgs:>14d} "
                f"{'NO_CONSUMER':>14}\n"
            )
        return
    for group in sorted(groups):
        out_tps, out_msgs = await _stats_of(admin, masters, "GROUP_GET_NUMS", f"{topic}@{group}")
        backlog = 0
        for _, addr in masters:
            try:
                _, table = await admin.consume_stats(addr, group, topic)
            except MQBrokerError:
                continue
            backlog += sum(
                int(s.get("brokerOffset", 0)) - int(s.get("consumerOffset", 0))
                for s in table.values()
            )
        if not active or in_msgs > 0 or out_msgs > 0:
            out(
                f"{topic:<64}  {group:<64} {max(backlog, 0):>12d} {in_tps:>11.2f} "
                f"{out_tps:>11.2f} {in_msgs:>14d} {out_msgs:>14d}\n"
            )


async def broker_consume_stats(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """brokerConsumeStats: every group's progress on one broker (GET_BROKER_CONSUME_STATS)."""
    opts.need("brokerAddr")
    stats = await admin.broker_consume_stats(opts["brokerAddr"], opts["order"])
    out(
        f"{'#Topic':<64}  {'#Group':<64}  {'#Broker Name':<32}  {'#QID':<4}  "
        f"{'#Broker Offset':<20}  {'#Consumer Offset':<20}  {'#Diff':<20}  #LastTime\n"
    )
    for entry in stats.get("consumeStatsList") or []:
        for group, group_stats in entry.items():
            for one in group_stats:
                table = one["offsetTable"]
                for key in sorted(table, key=lambda k: (k.topic, k.broker_name, k.queue_id)):
                    s = table[key]
                    broker_offset = int(s.get("brokerOffset", 0))
                    consumer_offset = int(s.get("consumerOffset", 0))
                    diff = broker_offset - consumer_offset
                    last = int(s.get("lastTimestamp", 0))
                    if diff < opts["level"] or last <= 0:
                        continue
                    last_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last / 1000))
                    out(
                        f"{key.topic:<64}  {group:<64}  {key.broker_name:<32}  "
                        f"{key.queue_id:<4d}  {broker_offset:<20d}  {consumer_offset:<20d}  "
                        f"{diff:<20d}  {last_text}\n"
                    )
    out(f"\nDiff Total: {int(stats.get('totalDiff') or 0)}\n")


async def get_consumer_status(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """getConsumerStatus: the queue offsets each live consumer holds, asked through the first
    broker of the topic (INVOKE_BROKER_TO_GET_CONSUMER_STATUS)."""
    opts.need("group", "topic")
    origin = opts["originClientId"] or ""
    masters = await admin.topic_masters(opts["topic"])
    table = {}
    if masters:
        table = await admin.consumer_status(masters[0][1], opts["topic"], opts["group"], origin)
    out(
        f"get consumer status from client. group={opts['group']}, topic={opts['topic']}, "
        f"originClientId={origin}\n"
    )
    out(f"{'#clientId':<50}  {'#brokerName':<15}  {'#queueId':<15}  #offset\n")
    for client in sorted(table):
        queues = table[client]
        for key in sorted(queues, key=lambda k: (k.broker_name, k.queue_id)):
            out(f"{client:<50}  {key.broker_name:<15}  {key.queue_id:<15d}  {queues[key]}\n")


async def _maintenance(admin: MQAdmin, opts: CommandOptions, out: Out, code: int) -> None:
    """Send ``code`` to -b, every master of -c, or every master of every cluster."""
    if opts["brokerAddr"]:
        addrs = [opts["brokerAddr"]]
    elif opts["cluster"]:
        addrs = [addr for _, addr in await admin.master_addrs(opts["cluster"])]
    else:
        addrs = [addr for _, addr in await _all_masters(admin)]
    for addr in addrs:
        await admin.broker_maintenance(addr, code)
    out("success\n")


async def clean_expired_cq(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """cleanExpiredCQ: drop consume queues whose messages are all gone."""
    await _maintenance(admin, opts, out, RequestCode.CLEAN_EXPIRED_CONSUMEQUEUE)


async def clean_unused_topic(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """cleanUnusedTopic: drop the queues of topics the broker no longer has."""
    await _maintenance(admin, opts, out, RequestCode.CLEAN_UNUSED_TOPIC)


async def delete_expired_commit_log(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """deleteExpiredCommitLog: delete expired commit-log files now."""
    await _maintenance(admin, opts, out, RequestCode.DELETE_EXPIRED_COMMITLOG)


async def resume_check_half_message(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """resumeCheckHalfMessage: check a transaction's half message again from scratch."""
    opts.need("msgId")
    await admin.resume_check_half_message(opts["msgId"])
    out(f"resume check half message {opts['msgId']} success.\n")


async def producer(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """producer: every live producer of a broker (GET_ALL_PRODUCER_INFO)."""
    opts.need("broker")
    table = await admin.all_producer_info(opts["broker"])
    for group in sorted(table):
        instances = table[group]
        if not instances:
            out(f"producer group ({group}) instances are empty\n")
            continue
        for p in instances:
            out(
                f"producer group ({group}) instance : clientId={p.get('clientId')},"
                f"remoteIP={p.get('remoteIP')}, language={p.get('language')}, "
                f"version={p.get('version')}, lastUpdateTimestamp={p.get('lastUpdateTimestamp')}\n"
            )


def _java_text(value: Any) -> str:
    """A field as Java's string concatenation writes it (null, true/false)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


async def query_cq(admin: MQAdmin, opts: CommandOptions, out: Out) -> None:
    """queryCq: raw consume-queue units of one queue (QUERY_CONSUME_QUEUE), like mqadmin."""
    opts.need("topic", "queue", "index")
    broker = opts["broker"]
    if not broker:
        masters = await admin.topic_masters(opts["topic"])
        if not masters:
            raise RMQError("No topic route data!")
        broker = masters[0][1]
    body = await admin.query_consume_queue(
        broker, opts["topic"], opts["queue"], opts["index"], opts["count"], opts["consumer"]
    )
    if "remark" in body:
        out(body["remark"] + "\n")
        return
    rule = "======================================\n"
    if body.get("subscriptionData") is not None:
        text = json.dumps(body["subscriptionData"], indent="\t", sort_keys=True)
        out(f"Subscription data: \n{text}\n{rule}")
    if body.get("filterData") is not None:
        out(f"Filter data: \n{body['filterData']}\n{rule}")
    out(f"Queue data: \nmax: {body.get('maxQueueIndex')}, min: {body.get('minQueueIndex')}\n{rule}")
    for i, unit in enumerate(body.get("queueData") or [], opts["index"]):
        out(
            f"idx: {i}\nConsumeQueueData{{physicOffset={unit.get('physicOffset')}, "
            f"physicSize={unit.get('physicSize')}, tagsCode={unit.get('tagsCode')}, "
            f"extendDataJson='{_java_text(unit.get('extendDataJson'))}', "
            f"bitMap='{_java_text(unit.get('bitMap'))}', "
            f"eval={_java_text(unit.get('eval', False))}, "
            f"msg='{_java_text(unit.get('msg'))}'}}\n{rule}"
        )


#: name → (options class, handler, one-line help), in mqadmin's spelling.
COMMANDS: dict[str, tuple[type[CommandOptions], Handler, str]] = {
    "updateTopic": (UpdateTopicOptions, update_topic, "Create or update a topic"),
    "deleteTopic": (DeleteTopicOptions, delete_topic, "Delete a topic from brokers and NameServer"),
    "topicList": (CommandOptions, topic_list, "List every topic"),
    "topicRoute": (TopicOptions, topic_route, "Show a topic's route"),
    "topicStatus": (TopicOptions, topic_status, "Show a topic's queue offsets"),
    "clusterList": (CommandOptions, cluster_list, "List clusters and brokers with their load"),
    "brokerStatus": (BrokerOrClusterOptions, broker_status, "Show a broker's runtime figures"),
    "consumerProgress": (GroupOptions, consumer_progress, "Show a group's consume progress"),
    "consumerConnection": (GroupOptions, consumer_connection, "Show a group's live consumers"),
    "producerConnection": (
        ProducerConnectionOptions,
        producer_connection,
        "Show a group's live producers",
    ),
    "updateSubGroup": (UpdateSubGroupOptions, update_sub_group, "Create or update a group"),
    "deleteSubGroup": (DeleteSubGroupOptions, delete_sub_group, "Delete a subscription group"),
    "resetOffsetByTime": (ResetOffsetOptions, reset_offset_by_time, "Reset offsets to a time"),
    "queryMsgById": (QueryMsgByIdOptions, query_msg_by_id, "Show a message by id"),
    "queryMsgByKey": (QueryMsgByKeyOptions, query_msg_by_key, "Find messages by key"),
    "getBrokerConfig": (BrokerOrClusterOptions, get_broker_config, "Show a broker's config"),
    "updateBrokerConfig": (
        UpdateBrokerConfigOptions,
        update_broker_config,
        "Change a broker config key",
    ),
    "updateKvConfig": (UpdateKvOptions, update_kv_config, "Set a NameServer KV entry"),
    "getKvConfig": (KvOptions, get_kv_config, "Read a NameServer KV entry"),
    "deleteKvConfig": (KvOptions, delete_kv_config, "Delete a NameServer KV entry"),
    "consumeTimeSpan": (ConsumeTimeSpanOptions, consume_time_span, "Show a group's time lag"),
    "cloneGroupOffset": (CloneGroupOffsetOptions, clone_group_offset, "Copy a group's offsets"),
    "statsAll": (StatsAllOptions, stats_all, "Topic and consumer TPS and 24-hour counts"),
    "brokerConsumeStats": (
        BrokerConsumeStatsOptions,
        broker_consume_stats,
        "Show every group's progress on a broker",
    ),
    "getConsumerStatus": (
        GetConsumerStatusOptions,
        get_consumer_status,
        "Show the offsets live consumers hold",
    ),
    "cleanExpiredCQ": (BrokerOrClusterOrAllOptions, clean_expired_cq, "Clean expired queues"),
    "cleanUnusedTopic": (
        BrokerOrClusterOrAllOptions,
        clean_unused_topic,
        "Clean queues of deleted topics",
    ),
    "deleteExpiredCommitLog": (
        BrokerOrClusterOrAllOptions,
        delete_expired_commit_log,
        "Delete expired commit-log files",
    ),
    "resumeCheckHalfMessage": (
        ResumeHalfOptions,
        resume_check_half_message,
        "Check a half message again",
    ),
    "producer": (ProducerOptions, producer, "Show a broker's producers"),
    "queryCq": (QueryCqOptions, query_cq, "Show raw consume-queue units"),
}


class Options(usage.Options):
    """``rmq-admin COMMAND [options]``."""

    synopsis = "Usage: rmq-admin COMMAND [-n namesrv] [options]"
    subCommands = [  # noqa: N815
        (name, None, cls, text) for name, (cls, _, text) in COMMANDS.items()
    ]

    def postOptions(self) -> None:
        """A command is required."""
        if self.subCommand is None:
            raise usage.UsageError("a command is required")


def run(
    reactor: Any,
    argv: Sequence[str],
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str] | None = None,
) -> Deferred[int]:
    """Run one command on ``reactor``; fires with the exit status (0 ok, 1 failure)."""
    env = os.environ if environ is None else environ
    options = Options()
    try:
        options.parseOptions(list(argv))
        sub = options.subOptions
        assert isinstance(sub, CommandOptions)
        namesrv = sub["namesrvAddr"] or env.get("NAMESRV_ADDR", "")
        addrs = [a.strip() for a in namesrv.split(";") if a.strip()]
        if not addrs:
            raise usage.UsageError("no NameServer address: use -n host:port or set NAMESRV_ADDR")
        timeout = float(sub["timeoutSeconds"])
    except (usage.UsageError, ValueError) as e:
        err.write(f"rmq-admin: {e}\n{options}" if not argv else f"rmq-admin: {e}\n")
        return succeed(1)
    name = str(options.subCommand)
    _, handler, _ = COMMANDS[name]
    remoting = RemotingClient(reactor, tcp_endpoint_factory(reactor), connect_timeout=timeout)
    admin = MQAdmin(remoting, reactor, addrs, timeout)
    return Deferred.fromCoroutine(_run_one(admin, name, handler, sub, out, err))


async def _run_one(
    admin: MQAdmin,
    name: str,
    handler: Handler,
    opts: CommandOptions,
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        await handler(admin, opts, out.write)
        status = 0
    except (usage.UsageError, MQBrokerError) as e:  # MQBrokerError's text names the broker
        err.write(f"rmq-admin {name}: {e}\n")
        status = 1
    except RMQError as e:
        err.write(f"rmq-admin {name}: {e.remark}\n")
        status = 1
    except Exception as e:  # a bug or an unexpected answer: still a clean exit status
        err.write(f"rmq-admin {name}: unexpected error: {e!r}\n")
        status = 1
    finally:
        await admin.close()
    return status


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``rmq-admin``); exits with the command's status."""
    from twisted.internet import task

    args = list(sys.argv[1:] if argv is None else argv)

    def start(reactor: Any) -> Deferred[None]:
        d = run(reactor, args, sys.stdout, sys.stderr)

        def done(status: int) -> None:
            if status:
                raise SystemExit(status)

        return d.addCallback(done)

    task.react(start)
