"""Consumer offsets: RocketMQ's ``ConsumerOffsetManager`` as a plain object.

Offsets live in memory keyed by ``topic@group`` and queue id (the value is the next offset to
consume) and are written to ``config/consumerOffset.json`` every 5 s and at stop
(ConsumerOffsetSerializeWrapper: ``{"offsetTable":{"<topic>@<group>":{<queueId>:<offset>}}}`` with
unquoted integer keys). Values are stored as given, −1 included (ali-ons commits −1, protocol §5.3).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from rmq.common import fastjson

TOPIC_GROUP_SEPARATOR = "@"


class ConsumerOffsetManager:
    """``(topic, group) → {queueId: offset}``; persisted as ``consumerOffset.json``."""

    log = Logger()
    file_name = "consumerOffset.json"

    def __init__(self) -> None:
        self._table: dict[str, dict[int, int]] = {}
        #: Bumped on every change so the periodic flush writes only when something changed.
        self.change_count = 0

    @staticmethod
    def key(topic: str, group: str) -> str:
        """``topic@group``."""
        return f"{topic}{TOPIC_GROUP_SEPARATOR}{group}"

    def commit_offset(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        """Store ``offset`` for (group, topic, queue)."""
        queues = self._table.setdefault(self.key(topic, group), {})
        if queues.get(queue_id) != offset:
            queues[queue_id] = offset
            self.change_count += 1

    def query_offset(self, group: str, topic: str, queue_id: int) -> int:
        """The stored offset, or −1 when none."""
        queues = self._table.get(self.key(topic, group))
        if queues is None:
            return -1
        return queues.get(queue_id, -1)

    def query_offsets(self, group: str, topic: str) -> dict[int, int]:
        """Every stored queue offset of (group, topic)."""
        return dict(self._table.get(self.key(topic, group), {}))

    def topics_of_group(self, group: str) -> set[str]:
        """Topics ``group`` has offsets for."""
        return {t for t, g in self._pairs() if g == group}

    def groups_of_topic(self, topic: str) -> set[str]:
        """Groups having offsets for ``topic``."""
        return {g for t, g in self._pairs() if t == topic}

    def _pairs(self) -> list[tuple[str, str]]:
        pairs = []
        for key in self._table:
            topic, sep, group = key.rpartition(TOPIC_GROUP_SEPARATOR)
            if sep:
                pairs.append((topic, group))
        return pairs

    def remove_group(self, group: str) -> None:
        """Forget every offset of ``group``."""
        for topic, g in self._pairs():
            if g == group:
                del self._table[self.key(topic, g)]
                self.change_count += 1

    def remove_topic(self, topic: str) -> None:
        """Forget every offset of ``topic``."""
        for t, group in self._pairs():
            if t == topic:
                del self._table[self.key(t, group)]
                self.change_count += 1

    def to_json(self) -> dict[str, Any]:
        """ConsumerOffsetSerializeWrapper as plain data (int keys are written unquoted)."""
        return {"offsetTable": {k: dict(v) for k, v in self._table.items()}}

    def encode(self) -> bytes:
        """``consumerOffset.json`` content (fastjson pretty form)."""
        return fastjson.dumps_pretty(self.to_json())

    def encode_compact(self) -> bytes:
        """GET_ALL_CONSUMER_OFFSET body."""
        return fastjson.dumps(self.to_json())

    def decode(self, data: bytes) -> None:
        """Load ``consumerOffset.json`` (numeric keys may come back as strings)."""
        obj = fastjson.loads_object(data, "consumerOffset.json")
        table: dict[str, dict[int, int]] = {}
        for key, queues in (obj.get("offsetTable") or {}).items():
            if not isinstance(queues, dict):
                continue
            table[str(key)] = {int(q): int(o) for q, o in queues.items()}
        self._table = table
