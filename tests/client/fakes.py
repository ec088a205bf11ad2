"""A recording fake of RemotingClient that plays NameServer and brokers at the command level.

``FakeCluster`` keeps topics, queues of stored records, consumer offsets, group membership and
queue locks; every request is appended to ``requests`` as ``(addr, command)`` so tests can assert
on the exact wire headers the client sends. Nothing here touches a socket or the reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from rmq.common import fastjson
from rmq.common.errors import RemotingConnectError
from rmq.common.message import (
    DELAY,
    TAGS,
    BrokerMessage,
    MessageExt,
    decode_batch,
    decode_messages,
    encode_stored_record,
    properties_to_string,
    string_to_properties,
    tags_hash,
)
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response

NAMESRV = "127.0.0.1:9876"


class FakeCluster:
    """NameServer + brokers ``broker-a`` (127.0.0.1:10911), ``broker-b`` (…:10921)."""

    def __init__(self, clock: Clock, brokers: int = 1, queues: int = 4) -> None:
        self.clock = clock
        self.brokers = {
            f"broker-{chr(97 + i)}": f"127.0.0.1:{10911 + 10 * i}" for i in range(brokers)
        }
        self.topics: dict[str, int] = {"TBW102": 8}
        self.default_queues = queues
        self.queues: dict[tuple[str, str, int], list[bytes]] = {}
        self.offsets: dict[tuple[str, str, str, int], int] = {}
        self.members: dict[str, dict[str, FakeRemoting]] = {}
        self.locks: dict[tuple[str, str, str, int], str] = {}
        self.requests: list[tuple[str, RemotingCommand]] = []
        self.down: set[str] = set()
        self.send_code: dict[str, int] = {}
        self.send_back_code: int = ResponseCode.SUCCESS
        self.held: list[tuple[Deferred[RemotingCommand], RemotingCommand, str]] = []
        self.commit_offset = 0

    def create_topic(self, topic: str, queues: int | None = None) -> None:
        """Create ``topic`` on every broker."""
        self.topics[topic] = queues or self.default_queues

    def connect(self, clock: Clock, handler: Callable[[Any, RemotingCommand], Any]) -> FakeRemoting:
        """A remoting factory for ``remoting_factory=cluster.connect``."""
        return FakeRemoting(self, handler)

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, remote: FakeRemoting, addr: str, cmd: RemotingCommand) -> Any:
        self.requests.append((addr, cmd))
        if addr in self.down:
            return RemotingConnectError(f"connect to {addr} refused")
        if addr == NAMESRV:
            return self._namesrv(cmd)
        name = next((n for n, a in self.brokers.items() if a == addr), None)
        if name is None:
            return RemotingConnectError(f"no broker at {addr}")
        f = getattr(self, f"_b{cmd.code}", None)
        if f is None:
            return new_response(cmd, ResponseCode.REQUEST_CODE_NOT_SUPPORTED, "fake")
        return f(remote, name, cmd)

    def _namesrv(self, cmd: RemotingCommand) -> RemotingCommand:
        assert cmd.code == RequestCode.GET_ROUTEINFO_BY_TOPIC
        topic = cmd.ext_fields["topic"]
        if topic not in self.topics:
            return new_response(cmd, ResponseCode.TOPIC_NOT_EXIST, f"No topic route info {topic}")
        n = self.topics[topic]
        route = {
            "brokerDatas": [
                {"brokerAddrs": {0: a}, "brokerName": name, "cluster": "C"}
                for name, a in self.brokers.items()
            ],
            "filterServerTable": {},
            "queueDatas": [
                {
                    "brokerName": name,
                    "perm": 6,
                    "readQueueNums": n,
                    "topicSysFlag": 0,
                    "writeQueueNums": n,
                }
                for name in self.brokers
            ],
        }
        return new_response(cmd, body=fastjson.dumps(route))  # fastjson style: unquoted keys

    def store(self, broker: str, topic: str, qid: int, msg: BrokerMessage) -> tuple[int, int]:
        q = self.queues.setdefault((broker, topic, qid), [])
        offset = len(q)
        phys = sum(len(r) for qq in self.queues.values() for r in qq)
        q.append(encode_stored_record(msg, offset, phys, int(self.clock.seconds() * 1000)))
        return offset, phys

    def _b310(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        code = self.send_code.get(broker, ResponseCode.SUCCESS)
        if code not in (0, 10, 11, 12):
            return new_response(cmd, code, "fake refusal")
        topic = ext["b"]
        if topic not in self.topics:
            self.topics[topic] = int(ext["d"])
        qid = int(ext["e"])
        props = string_to_properties(ext.get("i", ""))
        props_str = ext.get("i", "")
        reconsume = int(ext.get("j", "0"))
        if topic.startswith("%RETRY%") and reconsume >= int(ext.get("l", "16")):
            # Like the broker's retry redirect: exhausted retries go to %DLQ%<group> queue 0.
            topic, qid = "%DLQ%" + topic[len("%RETRY%") :], 0
            self.topics.setdefault(topic, 1)
            props.pop(DELAY, None)
            props_str = properties_to_string(props)
        msg = BrokerMessage(
            topic,
            qid,
            cmd.body,
            int(ext["h"]),
            props,
            props_str,
            tags_hash(props.get(TAGS)),
            int(ext["g"]),
            "127.0.0.1:5555",
            self.brokers[broker],
            int(ext["f"]),
            reconsume,
        )
        offset, phys = self.store(broker, topic, qid, msg)
        return new_response(
            cmd,
            code,
            None,
            {"msgId": f"7F000001{phys:024X}", "queueId": qid, "queueOffset": offset},
        )

    def _b320(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        topic, qid = ext["b"], int(ext["e"])
        self.topics.setdefault(topic, int(ext["d"]))
        first = -1
        ids = []
        for m in decode_batch(cmd.body, topic):
            msg = BrokerMessage.from_message(m, qid, store_host=self.brokers[broker])
            offset, phys = self.store(broker, topic, qid, msg)
            first = offset if first < 0 else first
            ids.append(f"7F000001{phys:024X}")
        return new_response(
            cmd, 0, None, {"msgId": ",".join(ids), "queueId": qid, "queueOffset": first}
        )

    def _b11(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> Any:
        ext = cmd.ext_fields
        topic, qid, offset = ext["topic"], int(ext["queueId"]), int(ext["queueOffset"])
        group = ext["consumerGroup"]
        if int(ext["sysFlag"]) & 1:
            self.commit_offset += 1
            self.offsets[(broker, group, topic, qid)] = int(ext["commitOffset"])
        q = self.queues.get((broker, topic, qid), [])
        hdr = {"minOffset": 0, "maxOffset": len(q), "suggestWhichBrokerId": 0}
        if offset > len(q):
            return new_response(
                cmd,
                ResponseCode.PULL_OFFSET_MOVED,
                "OFFSET_OVERFLOW_BADLY",
                {**hdr, "nextBeginOffset": len(q)},
            )
        if offset == len(q):
            d: Deferred[RemotingCommand] = Deferred()
            self.held.append((d, cmd, broker))
            return d
        recs = q[offset : offset + int(ext["maxMsgNums"])]
        return new_response(
            cmd, 0, "FOUND", {**hdr, "nextBeginOffset": offset + len(recs)}, b"".join(recs)
        )

    def wake(self) -> None:
        """Answer held pulls that now have messages (like the broker's arrival notification)."""
        held, self.held = self.held, []
        for d, cmd, broker in held:
            if d.called:
                continue
            ext = cmd.ext_fields
            q = self.queues.get((broker, ext["topic"], int(ext["queueId"])), [])
            if int(ext["queueOffset"]) < len(q):
                r = self._b11(None, broker, cmd)  # type: ignore[arg-type]
                d.callback(r)
            else:
                self.held.append((d, cmd, broker))

    def expire_holds(self) -> None:
        """Answer every held pull with PULL_NOT_FOUND (suspend timeout)."""
        held, self.held = self.held, []
        for d, cmd, _ in held:
            if d.called:
                continue
            off = int(cmd.ext_fields["queueOffset"])
            d.callback(
                new_response(
                    cmd,
                    ResponseCode.PULL_NOT_FOUND,
                    "OFFSET_OVERFLOW_ONE",
                    {
                        "nextBeginOffset": off,
                        "minOffset": 0,
                        "maxOffset": off,
                        "suggestWhichBrokerId": 0,
                    },
                )
            )

    def _b14(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        key = (broker, ext["consumerGroup"], ext["topic"], int(ext["queueId"]))
        if key in self.offsets:
            return new_response(cmd, 0, None, {"offset": self.offsets[key]})
        return new_response(cmd, ResponseCode.QUERY_NOT_FOUND, "Not found")

    def _b15(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        key = (broker, ext["consumerGroup"], ext["topic"], int(ext["queueId"]))
        self.offsets[key] = int(ext["commitOffset"])
        return new_response(cmd, 0, None, {})

    def _b30(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        q = self.queues.get((broker, ext["topic"], int(ext["queueId"])), [])
        return new_response(cmd, 0, None, {"offset": len(q)})

    def _b29(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        return new_response(cmd, 0, None, {"offset": 0})

    def _b34(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        data = fastjson.loads(cmd.body)
        changed = []
        for c in data["consumerDataSet"]:
            group = c["groupName"]
            if c["messageModel"] == "CLUSTERING":
                self.topics.setdefault("%RETRY%" + group, 1)
            members = self.members.setdefault(group, {})
            if data["clientID"] not in members:
                members[data["clientID"]] = remote
                changed.append(group)
        for g in changed:
            self.notify(g)
        return new_response(cmd)

    def _b35(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        group = cmd.ext_fields.get("consumerGroup")
        if group and self.members.get(group, {}).pop(cmd.ext_fields["clientID"], None):
            self.notify(group)
        return new_response(cmd, 0, None, {})

    def notify(self, group: str) -> None:
        """Send NOTIFY_CONSUMER_IDS_CHANGED to every member of ``group``."""
        for r in list(self.members.get(group, {}).values()):
            r.peer_request(
                new_request(
                    RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": group}, oneway=True
                )
            )

    def _b38(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        ids = sorted(self.members.get(cmd.ext_fields["consumerGroup"], {}))
        return new_response(cmd, body=fastjson.dumps({"consumerIdList": ids}))

    def _b36(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        if self.send_back_code != ResponseCode.SUCCESS:
            return new_response(cmd, self.send_back_code, "fake send-back refusal")
        return new_response(cmd)

    def _b41(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        body = fastjson.loads(cmd.body)
        ok = []
        for mq in body["mqSet"]:
            key = (broker, body["consumerGroup"], mq["topic"], mq["queueId"])
            if self.locks.get(key, body["clientId"]) == body["clientId"]:
                self.locks[key] = body["clientId"]
                ok.append(mq)
        return new_response(cmd, body=fastjson.dumps({"lockOKMQSet": ok}))

    def _b42(self, remote: FakeRemoting, broker: str, cmd: RemotingCommand) -> RemotingCommand:
        body = fastjson.loads(cmd.body)
        for mq in body["mqSet"]:
            key = (broker, body["consumerGroup"], mq["topic"], mq["queueId"])
            if self.locks.get(key) == body["clientId"]:
                del self.locks[key]
        return new_response(cmd)

    def stored(self, topic: str, qid: int = 0, broker: str = "broker-a") -> list[MessageExt]:
        """The records of one queue, decoded."""
        return decode_messages(b"".join(self.queues.get((broker, topic, qid), [])))

    def sent(self, code: int) -> list[tuple[str, RemotingCommand]]:
        """Recorded requests with ``code``."""
        return [(a, c) for a, c in self.requests if c.code == code]


class FakeRemoting:
    """Implements the client's IRemoting over a FakeCluster; records everything."""

    def __init__(self, cluster: FakeCluster, handler: Callable[[Any, RemotingCommand], Any]):
        self.cluster = cluster
        self.handler = handler
        self.closed = False
        self.replies: list[Any] = []

    def invoke(
        self, addr: str, command: RemotingCommand, timeout: float = 3.0
    ) -> Deferred[RemotingCommand]:
        if self.closed:
            return fail(RemotingConnectError("closed"))
        r = self.cluster.handle(self, addr, command)
        if isinstance(r, Exception):
            return fail(r)
        if isinstance(r, Deferred):
            return r
        return succeed(r)

    def invoke_oneway(self, addr: str, command: RemotingCommand) -> Deferred[None]:
        assert command.is_oneway
        r = self.cluster.handle(self, addr, command)
        if isinstance(r, Exception):
            return fail(r)
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.closed = True
        for g in self.cluster.members.values():
            for cid, r in list(g.items()):
                if r is self:
                    del g[cid]
        return succeed(None)

    def peer_request(self, cmd: RemotingCommand) -> None:
        """Deliver a broker → client request to the client's handler."""
        if not self.closed:
            self.replies.append(self.handler(None, cmd))
