"""MessageQueue: one queue of a topic on one broker (Java ``common.message.MessageQueue``)."""

from __future__ import annotations

from typing import Any

import attrs

from rmq.common import fastjson


@attrs.frozen(order=True)
class MessageQueue:
    """A (topic, broker name, queue id) triple, ordered like Java's ``compareTo``.

    Field order gives attrs' ordering: topic, then broker name, then queue id.
    """

    topic: str
    broker_name: str
    queue_id: int

    def java_str(self) -> str:
        """Java's ``MessageQueue.toString()``, which consistent hashing and offset files use."""
        return (
            f"MessageQueue [topic={self.topic}, brokerName={self.broker_name}, "
            f"queueId={self.queue_id}]"
        )

    def to_json_obj(self) -> dict[str, Any]:
        """The fastjson object form ``{"brokerName":…,"queueId":…,"topic":…}``."""
        return {"brokerName": self.broker_name, "queueId": self.queue_id, "topic": self.topic}

    @classmethod
    def from_json_obj(cls, obj: dict[str, Any]) -> MessageQueue:
        """Build from the JSON object form (keys ``topic``, ``brokerName``, ``queueId``)."""
        return cls(str(obj["topic"]), str(obj["brokerName"]), int(obj["queueId"]))

    def json_key(self) -> fastjson.ObjectKey:
        """The queue as a fastjson map key (``{{"brokerName":…}:value}``, Java's offset tables)."""
        return fastjson.ObjectKey.of(**self.to_json_obj())

    @classmethod
    def from_json_key(cls, key: fastjson.ObjectKey | str) -> MessageQueue:
        """Build from a map key as fastjson writes it (an object) or as a ``"{...}"`` string."""
        obj = key.as_dict() if isinstance(key, fastjson.ObjectKey) else fastjson.loads(key)
        return cls.from_json_obj(obj)
