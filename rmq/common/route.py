"""Route data shared by NameServer, broker and client (per RocketMQ's TopicRouteData and friends).

Value types and their JSON forms (protocol §2.3, §4):

* :class:`QueueData`, :class:`BrokerData`, :class:`TopicRouteData` (GET_ROUTEINFO_BY_TOPIC body),
  written fastjson-style (unquoted brokerId keys) or as standard JSON, read in every style;
* :class:`ClusterInfo` (GET_BROKER_CLUSTER_INFO body), :class:`DataVersion`;
* :class:`RegisterBrokerBody` (REGISTER_BROKER body), plain JSON or the zlib-compressed compact
  form, with ``bodyCrc32`` helpers;
* permission bits (per PermName) and topic sys-flag bits (per TopicSysFlag).

Topic configs inside a register body are kept as plain dicts in Java's JSON shape
(``topicName``, ``readQueueNums``, ``writeQueueNums``, ``perm``, ``topicFilterType``,
``topicSysFlag``, ``order``) so this module does not depend on the broker's TopicConfig class.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from rmq.common import fastjson

__all__ = [
    "PERM_PRIORITY",
    "PERM_READ",
    "PERM_WRITE",
    "PERM_INHERIT",
    "perm_to_string",
    "has_unit_flag",
    "has_unit_sub_flag",
    "DataVersion",
    "QueueData",
    "BrokerData",
    "TopicRouteData",
    "ClusterInfo",
    "RegisterBrokerBody",
    "body_crc32",
    "topic_list_json",
    "kv_table_json",
]

PERM_PRIORITY = 8
PERM_READ = 4
PERM_WRITE = 2
PERM_INHERIT = 1

MASTER_ID = 0


def perm_to_string(perm: int) -> str:
    """``RWX``-style text of a permission (per PermName.perm2String): ``RW-`` for 6."""
    return (
        ("R" if perm & PERM_READ else "-")
        + ("W" if perm & PERM_WRITE else "-")
        + ("X" if perm & PERM_INHERIT else "-")
    )


def has_unit_flag(topic_sys_flag: int) -> bool:
    """Bit 0 of a topic sys flag: a unit topic (per TopicSysFlag)."""
    return bool(topic_sys_flag & 1)


def has_unit_sub_flag(topic_sys_flag: int) -> bool:
    """Bit 1 of a topic sys flag: the topic has a unit subscription (per TopicSysFlag)."""
    return bool(topic_sys_flag & 2)


def _as_int(value: Any, what: str) -> int:
    """An int from a JSON number or a numeric string (cpp sends longs as strings)."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{what}: expected a number, got {value!r}")


def _as_dict(value: Any, what: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object")
    return value


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what}: expected a JSON array")
    return value


def _as_str(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"{what}: expected a string, got {value!r}")


@attrs.define
class DataVersion:
    """A broker's topic-config version (per DataVersion); equal when both fields are equal."""

    timestamp: int = 0
    counter: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in Java's order."""
        return {"counter": self.counter, "timestamp": self.timestamp}

    def to_json(self) -> bytes:
        """``{"counter":…,"timestamp":…}``."""
        return fastjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any) -> DataVersion:
        """Parse the JSON object; missing fields default to 0. Raises ``ValueError``."""
        d = _as_dict(d, "dataVersion")
        return cls(
            timestamp=_as_int(d.get("timestamp", 0), "dataVersion.timestamp"),
            counter=_as_int(d.get("counter", 0), "dataVersion.counter"),
        )

    @classmethod
    def from_json(cls, data: bytes) -> DataVersion:
        """Parse DataVersion JSON bytes. Raises ``ValueError``."""
        return cls.from_dict(fastjson.loads(data))


@attrs.define
class QueueData:
    """One broker's queues of one topic (per QueueData)."""

    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in Java's order."""
        return {
            "brokerName": self.broker_name,
            "perm": self.perm,
            "readQueueNums": self.read_queue_nums,
            "topicSysFlag": self.topic_sys_flag,
            "writeQueueNums": self.write_queue_nums,
        }

    @classmethod
    def from_dict(cls, d: Any) -> QueueData:
        """Parse the JSON object. Raises ``ValueError``."""
        d = _as_dict(d, "queueData")
        return cls(
            broker_name=_as_str(d.get("brokerName"), "queueData.brokerName"),
            read_queue_nums=_as_int(d.get("readQueueNums", 0), "queueData.readQueueNums"),
            write_queue_nums=_as_int(d.get("writeQueueNums", 0), "queueData.writeQueueNums"),
            perm=_as_int(d.get("perm", 0), "queueData.perm"),
            topic_sys_flag=_as_int(d.get("topicSysFlag", 0), "queueData.topicSysFlag"),
        )


@attrs.define
class BrokerData:
    """A broker group: cluster, name and ``brokerId → address`` (0 = master) (per BrokerData)."""

    cluster: str
    broker_name: str
    broker_addrs: dict[int, str] = attrs.Factory(dict)

    def copy(self) -> BrokerData:
        """A copy whose address map can be changed independently."""
        return BrokerData(self.cluster, self.broker_name, dict(self.broker_addrs))

    def master_addr(self) -> str | None:
        """The master's address (brokerId 0), if registered."""
        return self.broker_addrs.get(MASTER_ID)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``int`` address keys; the writer decides on quoting)."""
        return {
            "brokerAddrs": {k: self.broker_addrs[k] for k in sorted(self.broker_addrs)},
            "brokerName": self.broker_name,
            "cluster": self.cluster,
        }

    @classmethod
    def from_dict(cls, d: Any) -> BrokerData:
        """Parse the JSON object (quoted or unquoted brokerId keys). Raises ``ValueError``."""
        d = _as_dict(d, "brokerData")
        addrs = _as_dict(d.get("brokerAddrs"), "brokerData.brokerAddrs")
        return cls(
            cluster=_as_str(d.get("cluster", ""), "brokerData.cluster"),
            broker_name=_as_str(d.get("brokerName"), "brokerData.brokerName"),
            broker_addrs={
                _as_int(k, "brokerAddrs key"): _as_str(v, "brokerAddrs value")
                for k, v in addrs.items()
            },
        )


@attrs.define
class TopicRouteData:
    """A topic's route: queue data per broker and those brokers' addresses (per TopicRouteData)."""

    queue_datas: list[QueueData] = attrs.Factory(list)
    broker_datas: list[BrokerData] = attrs.Factory(list)
    filter_server_table: dict[str, list[str]] = attrs.Factory(dict)
    order_topic_conf: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in Java's order (``orderTopicConf`` only when set)."""
        d: dict[str, Any] = {
            "brokerDatas": [b.to_dict() for b in self.broker_datas],
            "filterServerTable": {k: list(v) for k, v in sorted(self.filter_server_table.items())},
        }
        if self.order_topic_conf is not None:
            d["orderTopicConf"] = self.order_topic_conf
        d["queueDatas"] = [q.to_dict() for q in self.queue_datas]
        return d

    def to_json(self, standard_keys: bool) -> bytes:
        """The route body: standard JSON (quoted keys, ASCII) or fastjson style (unquoted ids).

        The Java NameServer uses standard JSON for requesters with ``version`` ≥ V4_9_4 or
        ``acceptStandardJsonOnly=true``, fastjson style otherwise (protocol §2.1).
        """
        return fastjson.dumps(self.to_dict(), standard=standard_keys)

    @classmethod
    def from_dict(cls, d: Any) -> TopicRouteData:
        """Parse the JSON object. Raises ``ValueError``."""
        d = _as_dict(d, "topicRouteData")
        fst = _as_dict(d.get("filterServerTable"), "filterServerTable")
        conf = d.get("orderTopicConf")
        return cls(
            queue_datas=[
                QueueData.from_dict(q) for q in _as_list(d.get("queueDatas"), "queueDatas")
            ],
            broker_datas=[
                BrokerData.from_dict(b) for b in _as_list(d.get("brokerDatas"), "brokerDatas")
            ],
            filter_server_table={
                _as_str(k, "filterServerTable key"): [
                    _as_str(a, "filter server") for a in _as_list(v, "filter servers")
                ]
                for k, v in fst.items()
            },
            order_topic_conf=None if conf is None else _as_str(conf, "orderTopicConf"),
        )

    @classmethod
    def from_json(cls, data: bytes) -> TopicRouteData:
        """Parse a route body in any style (quoted or unquoted keys). Raises ``ValueError``."""
        return cls.from_dict(fastjson.loads(data))


@attrs.define
class ClusterInfo:
    """All brokers and clusters (per ClusterInfo, the GET_BROKER_CLUSTER_INFO body)."""

    broker_addr_table: dict[str, BrokerData] = attrs.Factory(dict)
    cluster_addr_table: dict[str, list[str]] = attrs.Factory(dict)

    def to_json(self) -> bytes:
        """fastjson style with unquoted brokerId keys (as Java sends it to every client)."""
        return fastjson.dumps(
            {
                "brokerAddrTable": {k: v.to_dict() for k, v in self.broker_addr_table.items()},
                "clusterAddrTable": {k: list(v) for k, v in self.cluster_addr_table.items()},
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> ClusterInfo:
        """Parse a ClusterInfo body. Raises ``ValueError``."""
        d = _as_dict(fastjson.loads(data), "clusterInfo")
        brokers = _as_dict(d.get("brokerAddrTable"), "brokerAddrTable")
        clusters = _as_dict(d.get("clusterAddrTable"), "clusterAddrTable")
        return cls(
            broker_addr_table={
                _as_str(k, "brokerAddrTable key"): BrokerData.from_dict(v)
                for k, v in brokers.items()
            },
            cluster_addr_table={
                _as_str(k, "clusterAddrTable key"): [
                    _as_str(n, "broker name") for n in _as_list(v, "broker names")
                ]
                for k, v in clusters.items()
            },
        )


def topic_list_json(topics: Iterable[str], broker_addr: str | None = None) -> bytes:
    """A TopicList body: ``{"brokerAddr":…,"topicList":[…]}`` (brokerAddr only when given)."""
    d: dict[str, Any] = {}
    if broker_addr is not None:
        d["brokerAddr"] = broker_addr
    d["topicList"] = list(topics)
    return fastjson.dumps(d)


def kv_table_json(table: Mapping[str, str]) -> bytes:
    """A KVTable body: ``{"table":{…}}``."""
    return fastjson.dumps({"table": dict(table)})


def body_crc32(body: bytes) -> int:
    """CRC32 of a body masked to 31 bits (per UtilAll.crc32), as sent in ``bodyCrc32``."""
    return zlib.crc32(body) & 0x7FFFFFFF


_TOPIC_DEFAULTS: dict[str, Any] = {
    "order": False,
    "perm": PERM_READ | PERM_WRITE,
    "readQueueNums": 16,
    "topicFilterType": "SINGLE_TAG",
    "topicSysFlag": 0,
    "writeQueueNums": 16,
}

_INT = struct.Struct(">i")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise ValueError("compressed register body truncated")
        (n,) = _INT.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(n)

    def chunk(self) -> bytes:
        n = self.int32()
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("compressed register body truncated")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b


@attrs.define
class RegisterBrokerBody:
    """The REGISTER_BROKER body (per RegisterBrokerBody and TopicConfigSerializeWrapper).

    ``topic_config_table`` maps topic name → TopicConfig as a dict in Java's JSON shape.
    """

    data_version: DataVersion = attrs.Factory(DataVersion)
    topic_config_table: dict[str, dict[str, Any]] = attrs.Factory(dict)
    filter_server_list: list[str] = attrs.Factory(list)

    def encode(self, compressed: bool = False) -> bytes:
        """The body bytes: JSON, or the zlib-compressed compact form (protocol §4.1)."""
        if not compressed:
            return fastjson.dumps(
                {
                    "filterServerList": list(self.filter_server_list),
                    "topicConfigSerializeWrapper": {
                        "dataVersion": self.data_version.to_dict(),
                        "topicConfigTable": self.topic_config_table,
                    },
                }
            )
        parts: list[bytes] = []
        dv = self.data_version.to_json()
        parts.append(_INT.pack(len(dv)))
        parts.append(dv)
        parts.append(_INT.pack(len(self.topic_config_table)))
        for name, tc in self.topic_config_table.items():
            line = (
                f"{name} {tc.get('readQueueNums', 16)} {tc.get('writeQueueNums', 16)} "
                f"{tc.get('perm', 6)} {tc.get('topicFilterType', 'SINGLE_TAG')}"
            ).encode()
            parts.append(_INT.pack(len(line)))
            parts.append(line)
        fs = fastjson.dumps(list(self.filter_server_list))
        parts.append(_INT.pack(len(fs)))
        parts.append(fs)
        return zlib.compress(b"".join(parts), 9)

    @classmethod
    def decode(cls, body: bytes, compressed: bool) -> RegisterBrokerBody:
        """Parse a body in either form. Raises ``ValueError`` (also for a bad zlib stream)."""
        if compressed:
            return cls._decode_compressed(body)
        d = _as_dict(fastjson.loads(body), "registerBrokerBody")
        wrapper = _as_dict(d.get("topicConfigSerializeWrapper"), "topicConfigSerializeWrapper")
        result = cls.from_wrapper(wrapper)
        result.filter_server_list = [
            _as_str(a, "filter server") for a in _as_list(d.get("filterServerList"), "filters")
        ]
        return result

    @classmethod
    def from_wrapper(cls, wrapper: Any) -> RegisterBrokerBody:
        """From a TopicConfigSerializeWrapper (old brokers send only that); ``ValueError``."""
        wrapper = _as_dict(wrapper, "topicConfigSerializeWrapper")
        table = _as_dict(wrapper.get("topicConfigTable"), "topicConfigTable")
        topics: dict[str, dict[str, Any]] = {}
        for name, tc in table.items():
            tc = _as_dict(tc, "topicConfig")
            full = dict(_TOPIC_DEFAULTS)
            full.update(tc)
            full["topicName"] = tc.get("topicName", name)
            for key in ("perm", "readQueueNums", "writeQueueNums", "topicSysFlag"):
                full[key] = _as_int(full[key], f"topicConfig.{key}")
            topics[_as_str(name, "topic name")] = full
        return cls(
            data_version=DataVersion.from_dict(wrapper.get("dataVersion")),
            topic_config_table=topics,
        )

    @classmethod
    def _decode_compressed(cls, body: bytes) -> RegisterBrokerBody:
        try:
            raw = zlib.decompress(body)
        except zlib.error as e:
            raise ValueError(f"compressed register body: {e}") from e
        r = _Reader(raw)
        data_version = DataVersion.from_json(r.chunk())
        count = r.int32()
        if count < 0:
            raise ValueError("compressed register body: negative topic count")
        topics: dict[str, dict[str, Any]] = {}
        for _ in range(count):
            fields = r.chunk().decode("utf-8").split(" ")
            if len(fields) < 5:
                raise ValueError("compressed register body: bad topic config line")
            name = fields[0]
            topics[name] = {
                "order": False,
                "perm": int(fields[3]),
                "readQueueNums": int(fields[1]),
                "topicFilterType": fields[4],
                "topicName": name,
                "topicSysFlag": 0,
                "writeQueueNums": int(fields[2]),
            }
        filters = _as_list(fastjson.loads(r.chunk()), "filterServerList")
        return cls(data_version, topics, [_as_str(a, "filter server") for a in filters])
