"""Subscription groups: RocketMQ's ``SubscriptionGroupManager`` as a plain object.

Holds ``subscriptionGroupTable`` (SubscriptionGroupConfig per consumer group: retry queue count,
max retries, consume switches), pre-creates RocketMQ's built-in groups (protocol §9.4), auto-creates
groups on use when ``autoCreateSubscriptionGroup`` is on, and encodes/decodes
``config/subscriptionGroup.json`` (SubscriptionGroupWrapper).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rmq.broker.dataversion import DataVersion
from rmq.common import fastjson
from rmq.common.asyncutil import now_ms

#: Groups the Java broker creates at start.
BUILTIN_GROUPS = (
    "TOOLS_CONSUMER",
    "FILTERSRV_CONSUMER",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
)
SYS_GROUP_PREFIX = "CID_RMQ_SYS_"


@attrs.frozen
class SubscriptionGroupConfig:
    """One consumer group's settings (Java ``SubscriptionGroupConfig``), Java's defaults."""

    group_name: str
    consume_enable: bool = True
    consume_from_min_enable: bool = True
    consume_broadcast_enable: bool = True
    retry_queue_nums: int = 1
    retry_max_times: int = 16
    broker_id: int = 0
    which_broker_when_consume_slowly: int = 1
    notify_consumer_ids_changed_enable: bool = True

    def to_json(self) -> dict[str, Any]:
        """The fastjson bean form (alphabetical keys)."""
        return {
            "brokerId": self.broker_id,
            "consumeBroadcastEnable": self.consume_broadcast_enable,
            "consumeEnable": self.consume_enable,
            "consumeFromMinEnable": self.consume_from_min_enable,
            "groupName": self.group_name,
            "notifyConsumerIdsChangedEnable": self.notify_consumer_ids_changed_enable,
            "retryMaxTimes": self.retry_max_times,
            "retryQueueNums": self.retry_queue_nums,
            "whichBrokerWhenConsumeSlowly": self.which_broker_when_consume_slowly,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], name: str | None = None) -> SubscriptionGroupConfig:
        """Read a SubscriptionGroupConfig bean; missing fields take Java's defaults."""
        d = cls(group_name=str(obj.get("groupName", name or "")))
        return cls(
            group_name=d.group_name,
            consume_enable=_as_bool(obj.get("consumeEnable", d.consume_enable)),
            consume_from_min_enable=_as_bool(
                obj.get("consumeFromMinEnable", d.consume_from_min_enable)
            ),
            consume_broadcast_enable=_as_bool(
                obj.get("consumeBroadcastEnable", d.consume_broadcast_enable)
            ),
            retry_queue_nums=int(obj.get("retryQueueNums", d.retry_queue_nums)),
            retry_max_times=int(obj.get("retryMaxTimes", d.retry_max_times)),
            broker_id=int(obj.get("brokerId", d.broker_id)),
            which_broker_when_consume_slowly=int(
                obj.get("whichBrokerWhenConsumeSlowly", d.which_broker_when_consume_slowly)
            ),
            notify_consumer_ids_changed_enable=_as_bool(
                obj.get("notifyConsumerIdsChangedEnable", d.notify_consumer_ids_changed_enable)
            ),
        )


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class SubscriptionGroupManager:
    """The broker's consumer-group table; persisted as ``subscriptionGroup.json``."""

    log = Logger()
    file_name = "subscriptionGroup.json"

    def __init__(self, clock: IReactorTime, auto_create: bool = True) -> None:
        self._clock = clock
        self.auto_create = auto_create
        self._table: dict[str, SubscriptionGroupConfig] = {}
        self.data_version = DataVersion(timestamp=now_ms(clock))
        self.listeners: list[Callable[[], None]] = []
        for name in BUILTIN_GROUPS:
            self._table[name] = SubscriptionGroupConfig(name)

    def _changed(self) -> None:
        self.data_version = self.data_version.next(now_ms(self._clock))
        for listener in list(self.listeners):
            listener()

    def find(self, group: str) -> SubscriptionGroupConfig | None:
        """The config of ``group`` without creating it."""
        return self._table.get(group)

    def find_or_create(self, group: str) -> SubscriptionGroupConfig | None:
        """The config of ``group``; created with defaults when auto-creation is on (or for a
        ``CID_RMQ_SYS_`` group). None when unknown and not creatable
        (SUBSCRIPTION_GROUP_NOT_EXIST)."""
        config = self._table.get(group)
        if config is not None:
            return config
        if not (self.auto_create or group.startswith(SYS_GROUP_PREFIX)):
            return None
        config = SubscriptionGroupConfig(group)
        self._table[group] = config
        self.log.info("Auto-created subscription group {group}", group=group)
        self._changed()
        return config

    def update(self, config: SubscriptionGroupConfig) -> None:
        """Create or replace a group config (admin)."""
        self._table[config.group_name] = config
        self._changed()

    def delete(self, group: str) -> bool:
        """Remove a group; False when it did not exist."""
        if self._table.pop(group, None) is None:
            return False
        self._changed()
        return True

    def groups(self) -> list[str]:
        """Every group name."""
        return list(self._table)

    def configs(self) -> list[SubscriptionGroupConfig]:
        """Every group config."""
        return list(self._table.values())

    def to_json(self) -> dict[str, Any]:
        """SubscriptionGroupWrapper as plain data."""
        return {
            "dataVersion": self.data_version.to_json(),
            "subscriptionGroupTable": {n: c.to_json() for n, c in self._table.items()},
        }

    def encode(self) -> bytes:
        """``subscriptionGroup.json`` content (fastjson pretty form)."""
        return fastjson.dumps_pretty(self.to_json())

    def decode(self, data: bytes) -> None:
        """Load ``subscriptionGroup.json`` (entries add to / replace the built-in groups)."""
        obj = fastjson.loads_object(data, "subscriptionGroup.json")
        for name, raw in (obj.get("subscriptionGroupTable") or {}).items():
            if isinstance(raw, dict):
                self._table[str(name)] = SubscriptionGroupConfig.from_json(raw, str(name))
        if "dataVersion" in obj:
            self.data_version = DataVersion.from_json(obj["dataVersion"])
