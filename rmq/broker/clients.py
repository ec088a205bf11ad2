"""Client registry: RocketMQ's ``ProducerManager`` and ``ConsumerManager`` as plain objects.

Producers and consumers register through HEART_BEAT (protocol §5.4; Java, ali-ons and cpp body
shapes, §2.3/§12), are dropped when their connection closes, on UNREGISTER_CLIENT, or when
silent for
``channel_expired_ms`` (120 s; :meth:`ConsumerManager.scan_not_active` runs every 10 s). Whenever a
consumer group's members or subscribed topics change, an :class:`IConsumerIdsChangeListener` is told
at once with the group's remaining connections (the broker then sends NOTIFY_CONSUMER_IDS_CHANGED).

Two members sharing a client id, or members subscribing differently, are reported as group warnings
(logged, and listed by :meth:`ConsumerManager.warnings` for admin tools): both break rebalancing.

Connections are opaque hashable objects here (IRemotingConnection in the running broker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rmq.broker.interfaces import IConsumerIdsChangeListener
from rmq.common import fastjson
from rmq.common.asyncutil import now_ms

CHANNEL_EXPIRED_MS = 120_000

CONSUME_TYPES = ("CONSUME_ACTIVELY", "CONSUME_PASSIVELY")
MESSAGE_MODELS = ("BROADCASTING", "CLUSTERING")
CONSUME_FROM_WHERE = (
    "CONSUME_FROM_LAST_OFFSET",
    "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    "CONSUME_FROM_MIN_OFFSET",
    "CONSUME_FROM_MAX_OFFSET",
    "CONSUME_FROM_FIRST_OFFSET",
    "CONSUME_FROM_TIMESTAMP",
)
SUB_ALL = "*"
EXPRESSION_TAG = "TAG"


def tags_hash_code(tag: str) -> int:
    """Java ``String.hashCode`` of ``tag`` (UTF-16 code units, signed 32-bit)."""
    h = 0
    data = tag.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _enum_name(value: Any, names: tuple[str, ...], default: str) -> str:
    """An enum given as a name or an ordinal (cpp sends ordinals, protocol §2.2)."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return names[value] if 0 <= value < len(names) else default
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _enum_name(int(text), names, default)
        if text == "PUSH":
            return "CONSUME_PASSIVELY"
        if text == "PULL":
            return "CONSUME_ACTIVELY"
        return text or default
    return default


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


@attrs.frozen
class SubscriptionData:
    """One topic subscription of a group (Java ``SubscriptionData``)."""

    topic: str
    sub_string: str = SUB_ALL
    tags_set: tuple[str, ...] = ()
    code_set: frozenset[int] = frozenset()
    sub_version: int = 0
    expression_type: str = EXPRESSION_TAG
    class_filter_mode: bool = False

    @property
    def matches_all(self) -> bool:
        """True for ``*`` (or an empty expression)."""
        return self.sub_string in ("", SUB_ALL)

    def is_matched_by_tags_code(self, tags_code: int) -> bool:
        """The broker's TAG filter: compare hash codes only (collisions pass, clients re-check).

        A non-TAG (SQL92) subscription passes every tags code, as Java's
        ``ExpressionMessageFilter.isMatchedByConsumeQueue`` without bloom data: its expression
        is evaluated against the properties later (rmq.broker.filter).
        """
        if self.matches_all:
            return True
        low = tags_code & 0xFFFFFFFF
        signed = low - (1 << 32) if low & 0x80000000 else low
        return signed in self.code_set or self.expression_type != EXPRESSION_TAG

    def to_json(self) -> dict[str, Any]:
        """The fastjson bean form (admin ConsumerConnection)."""
        return {
            "classFilterMode": self.class_filter_mode,
            "codeSet": sorted(self.code_set),
            "expressionType": self.expression_type,
            "subString": self.sub_string,
            "subVersion": self.sub_version,
            "tagsSet": list(self.tags_set),
            "topic": self.topic,
        }


def build_subscription(
    topic: str, expression: str | None, sub_version: int = 0, expression_type: str | None = None
) -> SubscriptionData:
    """FilterAPI.buildSubscriptionData: ``a || b`` → tags set and their hash codes."""
    expr = (expression or "").strip()
    etype = (expression_type or EXPRESSION_TAG).strip() or EXPRESSION_TAG
    if not expr or expr == SUB_ALL:
        return SubscriptionData(topic, SUB_ALL, (), frozenset(), sub_version, etype)
    if etype != EXPRESSION_TAG:
        return SubscriptionData(topic, expr, (), frozenset(), sub_version, etype)
    tags = tuple(t.strip() for t in expr.split("||") if t.strip())
    return SubscriptionData(
        topic, expr, tags, frozenset(tags_hash_code(t) for t in tags), sub_version, etype
    )


def subscription_from_json(obj: Mapping[str, Any]) -> SubscriptionData:
    """A heartbeat SubscriptionData; rebuilds tagsSet/codeSet from subString when absent (cpp)."""
    topic = str(obj.get("topic", ""))
    sub_string = str(obj.get("subString") or SUB_ALL)
    version = _as_int(obj.get("subVersion"))
    etype = str(obj.get("expressionType") or EXPRESSION_TAG)
    built = build_subscription(topic, sub_string, version, etype)
    codes = obj.get("codeSet")
    tags = obj.get("tagsSet")
    if codes and tags:
        built = attrs.evolve(
            built,
            tags_set=tuple(str(t) for t in tags),
            code_set=frozenset(_as_int(c) for c in codes),
        )
    return attrs.evolve(built, class_filter_mode=_as_bool(obj.get("classFilterMode", False)))


@attrs.frozen
class ConsumerData:
    """One consumer group entry of a heartbeat."""

    group_name: str
    consume_type: str
    message_model: str
    consume_from_where: str
    subscriptions: tuple[SubscriptionData, ...]
    unit_mode: bool = False


@attrs.frozen
class HeartbeatData:
    """A decoded HEART_BEAT body (Java ``HeartbeatData``)."""

    client_id: str
    consumers: tuple[ConsumerData, ...]
    producer_groups: tuple[str, ...]


def parse_heartbeat(body: bytes) -> HeartbeatData:
    """Decode a HEART_BEAT body in any client dialect (enum names or ordinals, string numbers).

    Raises ValueError for a body that is not a JSON object.
    """
    obj = fastjson.loads_object(body, "heartbeat body")
    consumers = []
    for raw in obj.get("consumerDataSet") or ():
        if not isinstance(raw, dict):
            continue
        subs = tuple(
            subscription_from_json(s)
            for s in raw.get("subscriptionDataSet") or ()
            if isinstance(s, dict)
        )
        consumers.append(
            ConsumerData(
                group_name=str(raw.get("groupName", "")),
                consume_type=_enum_name(raw.get("consumeType"), CONSUME_TYPES, "CONSUME_PASSIVELY"),
                message_model=_enum_name(raw.get("messageModel"), MESSAGE_MODELS, "CLUSTERING"),
                consume_from_where=_enum_name(
                    raw.get("consumeFromWhere"), CONSUME_FROM_WHERE, "CONSUME_FROM_LAST_OFFSET"
                ),
                subscriptions=subs,
                unit_mode=_as_bool(raw.get("unitMode", False)),
            )
        )
    producers = tuple(
        str(p.get("groupName", "")) for p in obj.get("producerDataSet") or () if isinstance(p, dict)
    )
    return HeartbeatData(str(obj.get("clientID", "")), tuple(consumers), producers)


@attrs.define
class ClientChannelInfo:
    """One client connection of a group (Java ``ClientChannelInfo``)."""

    connection: Any
    client_id: str
    language: str
    version: int
    last_update_ms: int

    @property
    def address(self) -> str:
        """The peer's ``ip:port``."""
        return str(getattr(self.connection, "remote_address", ""))


@attrs.define
class ConsumerGroupInfo:
    """Live members and merged subscriptions of one consumer group (Java ``ConsumerGroupInfo``)."""

    group_name: str
    consume_type: str
    message_model: str
    consume_from_where: str
    channels: dict[Any, ClientChannelInfo] = attrs.Factory(dict)
    subscriptions: dict[str, SubscriptionData] = attrs.Factory(dict)
    member_subscriptions: dict[Any, dict[str, str]] = attrs.Factory(dict)
    warnings: list[str] = attrs.Factory(list)
    last_update_ms: int = 0

    def client_ids(self) -> list[str]:
        """Client ids of the live members."""
        return [c.client_id for c in self.channels.values()]

    def update_channel(self, info: ClientChannelInfo) -> bool:
        """Add or refresh a member; True when the connection is new to the group."""
        old = self.channels.get(info.connection)
        self.channels[info.connection] = info
        return old is None

    def update_subscriptions(self, subs: Iterable[SubscriptionData]) -> bool:
        """Merge a heartbeat's subscriptions (Java rules, §10.6); True if the topic set changed."""
        changed = False
        new = {s.topic: s for s in subs}
        for topic, sub in new.items():
            old = self.subscriptions.get(topic)
            if old is None:
                self.subscriptions[topic] = sub
                changed = True
            elif sub.sub_version > old.sub_version:
                self.subscriptions[topic] = sub
        for topic in list(self.subscriptions):
            if topic not in new:
                del self.subscriptions[topic]
                changed = True
        return changed

    def remove_channel(self, connection: Any) -> bool:
        """Remove a member; True when it was one."""
        self.member_subscriptions.pop(connection, None)
        return self.channels.pop(connection, None) is not None

    def compute_warnings(self) -> list[str]:
        """Duplicate client ids and differing subscriptions among the live members."""
        found: list[str] = []
        by_id: dict[str, list[str]] = {}
        for info in self.channels.values():
            by_id.setdefault(info.client_id, []).append(info.address)
        for client_id, addrs in sorted(by_id.items()):
            if len(addrs) > 1:
                found.append(
                    f"client id {client_id} is used by {len(addrs)} connections "
                    f"({', '.join(sorted(addrs))}); rebalance will assign them the same queues"
                )
        distinct = {
            tuple(sorted(subs.items()))
            for conn, subs in self.member_subscriptions.items()
            if conn in self.channels
        }
        if len(distinct) > 1:
            parts = []
            for conn, subs in self.member_subscriptions.items():
                member = self.channels.get(conn)
                if member is not None:
                    text = ", ".join(f"{t}={e}" for t, e in sorted(subs.items()))
                    parts.append(f"{member.client_id}: {text}")
            found.append(
                "members subscribe differently (queues may be consumed twice or not at all): "
                + "; ".join(sorted(parts))
            )
        return found


class ConsumerManager:
    """Consumer groups by name (Java ``ConsumerManager``)."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        listener: IConsumerIdsChangeListener | None = None,
        channel_expired_ms: int = CHANNEL_EXPIRED_MS,
        notify_enabled: bool = True,
    ) -> None:
        self._clock = clock
        self.listener = listener
        self.channel_expired_ms = channel_expired_ms
        self.notify_enabled = notify_enabled
        self._groups: dict[str, ConsumerGroupInfo] = {}
        #: Told ``(group, subscriptions)`` of every registration (Java's REGISTER event; the
        #: SQL92 filter registry of rmq.broker.filter listens).
        self.register_listeners: list[Callable[[str, tuple[SubscriptionData, ...]], None]] = []
        #: Told ``group`` when its last member left (Java's UNREGISTER event).
        self.group_removed_listeners: list[Callable[[str], None]] = []

    # -- queries ------------------------------------------------------------------------------

    def group(self, group: str) -> ConsumerGroupInfo | None:
        """The live info of ``group``, or None when no member is online."""
        return self._groups.get(group)

    def groups(self) -> list[str]:
        """Names of groups with live members."""
        return list(self._groups)

    def client_ids(self, group: str) -> list[str]:
        """Client ids of the live members of ``group`` (empty when none)."""
        info = self._groups.get(group)
        return info.client_ids() if info else []

    def find_subscription(self, group: str, topic: str) -> SubscriptionData | None:
        """The group's merged subscription to ``topic`` (from heartbeats)."""
        info = self._groups.get(group)
        return info.subscriptions.get(topic) if info else None

    def groups_of_topic(self, topic: str) -> list[str]:
        """Groups with a live subscription to ``topic``."""
        return [n for n, g in self._groups.items() if topic in g.subscriptions]

    def warnings(self) -> dict[str, list[str]]:
        """Current warnings per group (duplicate client ids, differing subscriptions)."""
        return {n: list(g.warnings) for n, g in self._groups.items() if g.warnings}

    # -- changes ------------------------------------------------------------------------------

    def register_consumer(
        self,
        data: ConsumerData,
        connection: Any,
        client_id: str,
        language: str = "JAVA",
        version: int = 0,
        notify_enabled: bool = True,
    ) -> bool:
        """Register/refresh ``connection`` as a member of ``data.group_name``.

        Returns True when the group's membership or subscribed topics changed (then the listener
        has been told).
        """
        now = now_ms(self._clock)
        info = self._groups.get(data.group_name)
        if info is None:
            info = ConsumerGroupInfo(
                data.group_name, data.consume_type, data.message_model, data.consume_from_where
            )
            self._groups[data.group_name] = info
        info.consume_type = data.consume_type
        info.message_model = data.message_model
        info.consume_from_where = data.consume_from_where
        info.last_update_ms = now
        joined = info.update_channel(
            ClientChannelInfo(connection, client_id, language, version, now)
        )
        if joined:
            self.log.info(
                "Consumer {client} ({addr}) joined group {group}",
                client=client_id,
                addr=getattr(connection, "remote_address", "?"),
                group=data.group_name,
            )
        info.member_subscriptions[connection] = {s.topic: s.sub_string for s in data.subscriptions}
        topics_changed = info.update_subscriptions(data.subscriptions)
        self._refresh_warnings(info)
        changed = joined or topics_changed
        for listener in self.register_listeners:
            listener(data.group_name, data.subscriptions)
        if changed and notify_enabled:
            self._notify(info)
        return changed

    def unregister_consumer(self, group: str, connection: Any, notify_enabled: bool = True) -> bool:
        """Remove ``connection`` from ``group`` (UNREGISTER_CLIENT); True when it was a member."""
        info = self._groups.get(group)
        if info is None or not info.remove_channel(connection):
            return False
        self.log.info("Consumer left group {group}", group=group)
        self._after_removal(info, notify_enabled)
        return True

    def connection_closed(self, connection: Any) -> list[str]:
        """Drop ``connection`` from every group; returns the groups it left."""
        left = []
        for info in list(self._groups.values()):
            if info.remove_channel(connection):
                left.append(info.group_name)
                self.log.info(
                    "Consumer connection {addr} of group {group} closed",
                    addr=getattr(connection, "remote_address", "?"),
                    group=info.group_name,
                )
                self._after_removal(info, True)
        return left

    def scan_not_active(self) -> list[Any]:
        """Expire members silent for longer than ``channel_expired_ms``; returns their connections
        (the caller closes them)."""
        now = now_ms(self._clock)
        expired = []
        for info in list(self._groups.values()):
            gone = [
                c
                for c, ch in info.channels.items()
                if now - ch.last_update_ms > self.channel_expired_ms
            ]
            for conn in gone:
                ch = info.channels[conn]
                self.log.warn(
                    "Consumer {client} ({addr}) of group {group} expired after {ms} ms of silence",
                    client=ch.client_id,
                    addr=ch.address,
                    group=info.group_name,
                    ms=now - ch.last_update_ms,
                )
                info.remove_channel(conn)
                expired.append(conn)
            if gone:
                self._after_removal(info, True)
        return expired

    def _after_removal(self, info: ConsumerGroupInfo, notify_enabled: bool) -> None:
        if not info.channels:
            self._groups.pop(info.group_name, None)
            self.log.info("Consumer group {group} has no member left", group=info.group_name)
            for listener in self.group_removed_listeners:
                listener(info.group_name)
            return
        self._refresh_warnings(info)
        if notify_enabled:
            self._notify(info)

    def _refresh_warnings(self, info: ConsumerGroupInfo) -> None:
        new = info.compute_warnings()
        for text in new:
            if text not in info.warnings:
                self.log.warn("Consumer group {group}: {text}", group=info.group_name, text=text)
        info.warnings = new

    def _notify(self, info: ConsumerGroupInfo) -> None:
        if self.listener is None or not self.notify_enabled:
            return
        self.listener.consumer_ids_changed(info.group_name, list(info.channels))


class ProducerManager:
    """Producer groups by name (Java ``ProducerManager``)."""

    log = Logger()

    def __init__(self, clock: IReactorTime, channel_expired_ms: int = CHANNEL_EXPIRED_MS) -> None:
        self._clock = clock
        self.channel_expired_ms = channel_expired_ms
        self._groups: dict[str, dict[Any, ClientChannelInfo]] = {}

    def register_producer(
        self, group: str, connection: Any, client_id: str, language: str = "JAVA", version: int = 0
    ) -> None:
        """Register/refresh ``connection`` in producer ``group``."""
        channels = self._groups.setdefault(group, {})
        if connection not in channels:
            self.log.info("Producer {client} joined group {group}", client=client_id, group=group)
        channels[connection] = ClientChannelInfo(
            connection, client_id, language, version, now_ms(self._clock)
        )

    def unregister_producer(self, group: str, connection: Any) -> bool:
        """Remove ``connection`` from ``group``; True when it was a member."""
        channels = self._groups.get(group)
        if channels is None or channels.pop(connection, None) is None:
            return False
        if not channels:
            del self._groups[group]
        return True

    def connection_closed(self, connection: Any) -> list[str]:
        """Drop ``connection`` from every group; returns the groups it left."""
        left = [g for g in list(self._groups) if self.unregister_producer(g, connection)]
        return left

    def scan_not_active(self) -> list[Any]:
        """Expire silent members; returns their connections."""
        now = now_ms(self._clock)
        expired = []
        for group, channels in list(self._groups.items()):
            for conn, ch in list(channels.items()):
                if now - ch.last_update_ms > self.channel_expired_ms:
                    self.log.warn(
                        "Producer {client} of group {group} expired",
                        client=ch.client_id,
                        group=group,
                    )
                    del channels[conn]
                    expired.append(conn)
            if not channels:
                del self._groups[group]
        return expired

    def channels(self, group: str) -> list[ClientChannelInfo]:
        """Live members of ``group``."""
        return list(self._groups.get(group, {}).values())

    def groups(self) -> list[str]:
        """Producer groups with live members."""
        return list(self._groups)

    def find_connection(self, client_id: str) -> Any | None:
        """The connection of the producer whose client id is ``client_id`` (Java
        ``ProducerManager.findChannel``; request/reply pushes go there), or None."""
        for channels in self._groups.values():
            for info in channels.values():
                if info.client_id == client_id:
                    return info.connection
        return None

    def available_connection(self, group: str) -> Any | None:
        """The most recently heard-from connection of ``group`` (transaction check-backs)."""
        channels = self._groups.get(group)
        if not channels:
            return None
        return max(channels.values(), key=lambda c: c.last_update_ms).connection
