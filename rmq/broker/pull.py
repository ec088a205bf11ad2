"""PULL_MESSAGE (11) with long polling: protocol §5.2, §7.3.2, §10.5, §10.6.

Java counterparts: ``PullMessageProcessor``, ``PullMessageRequestHeader``,
``PullMessageResponseHeader``. The body of a FOUND answer is the stored records concatenated,
straight from the store (no decode, no re-encode).
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from zope.interface import implementer

from rmq.broker.clients import (
    EXPRESSION_TAG,
    ConsumerManager,
    SubscriptionData,
    build_subscription,
)
from rmq.broker.config import BrokerConfig
from rmq.broker.filter import SqlPullFilter
from rmq.broker.identity import BrokerIdentity
from rmq.broker.longpoll import PullRequestHoldService
from rmq.broker.offsets import ConsumerOffsetManager
from rmq.broker.send import FAQ
from rmq.broker.subscription import SubscriptionGroupManager
from rmq.broker.topic import TopicConfigManager, is_readable
from rmq.remoting.codes import FLAG_RESPONSE, ResponseCode
from rmq.remoting.command import RemotingCommand, new_response
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor
from rmq.store.interfaces import GetMessageResult, GetMessageStatus, IMessageStore

FLAG_COMMIT_OFFSET = 0x1
FLAG_SUSPEND = 0x2
FLAG_SUBSCRIPTION = 0x4
FLAG_CLASS_FILTER = 0x8


@attrs.define
class PullMessageRequestHeader:
    """Decoded PULL_MESSAGE header."""

    consumer_group: str
    topic: str
    queue_id: int
    queue_offset: int
    max_msg_nums: int
    sys_flag: int
    commit_offset: int
    suspend_timeout_ms: int
    subscription: str | None
    sub_version: int
    expression_type: str

    @classmethod
    def from_request(cls, request: RemotingCommand) -> PullMessageRequestHeader:
        """Decode; HeaderError naming the field when a required one is missing or malformed."""
        return cls(
            consumer_group=request.ext_str("consumerGroup"),
            topic=request.ext_str("topic"),
            queue_id=request.ext_int("queueId"),
            queue_offset=request.ext_int("queueOffset"),
            max_msg_nums=request.ext_int("maxMsgNums"),
            sys_flag=request.ext_int("sysFlag"),
            commit_offset=request.ext_int("commitOffset", 0),
            suspend_timeout_ms=request.ext_int("suspendTimeoutMillis", 0),
            subscription=request.ext_fields.get("subscription"),
            sub_version=request.ext_int("subVersion", 0),
            expression_type=request.ext_fields.get("expressionType") or EXPRESSION_TAG,
        )


def _refused_or(
    request: RemotingCommand, checked: SubscriptionData | tuple[int, str]
) -> SubscriptionData | RemotingCommand:
    """The SQL92 check's subscription, or its refusal as the response."""
    if isinstance(checked, tuple):
        return new_response(request, checked[0], checked[1], {})
    return checked


_CODES = {
    GetMessageStatus.FOUND: ResponseCode.SUCCESS,
    GetMessageStatus.NO_MATCHED_MESSAGE: ResponseCode.PULL_RETRY_IMMEDIATELY,
    GetMessageStatus.MESSAGE_WAS_REMOVING: ResponseCode.PULL_RETRY_IMMEDIATELY,
    GetMessageStatus.OFFSET_FOUND_NULL: ResponseCode.PULL_NOT_FOUND,
    GetMessageStatus.OFFSET_OVERFLOW_ONE: ResponseCode.PULL_NOT_FOUND,
    GetMessageStatus.OFFSET_OVERFLOW_BADLY: ResponseCode.PULL_OFFSET_MOVED,
    GetMessageStatus.OFFSET_TOO_SMALL: ResponseCode.PULL_OFFSET_MOVED,
}


def response_code(result: GetMessageResult, request_offset: int) -> int:
    """The PULL response code of a store result (§10.5 table)."""
    if result.status in (
        GetMessageStatus.NO_MESSAGE_IN_QUEUE,
        GetMessageStatus.NO_MATCHED_LOGIC_QUEUE,
    ):
        return (
            ResponseCode.PULL_NOT_FOUND if request_offset == 0 else ResponseCode.PULL_OFFSET_MOVED
        )
    if result.status is GetMessageStatus.FOUND and not result.messages:
        return ResponseCode.PULL_RETRY_IMMEDIATELY
    return _CODES.get(result.status, ResponseCode.SYSTEM_ERROR)


@implementer(IRequestProcessor)
class PullMessageProcessor:
    """Code 11 (Java ``PullMessageProcessor``)."""

    log = Logger()

    def __init__(
        self,
        config: BrokerConfig,
        identity: BrokerIdentity,
        topics: TopicConfigManager,
        groups: SubscriptionGroupManager,
        consumers: ConsumerManager,
        offsets: ConsumerOffsetManager,
        store: IMessageStore,
        hold: PullRequestHoldService,
    ) -> None:
        self.config = config
        self.identity = identity
        self.topics = topics
        self.groups = groups
        self.consumers = consumers
        self.offsets = offsets
        self.store = store
        self.hold = hold
        #: The SQL92 part (rmq.broker.filter.SqlPullFilter), set by install_filter.
        self.sql: SqlPullFilter | None = None

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand | Deferred[RemotingCommand | None]:
        """Answer a pull now, or after holding it (long polling).

        When the store answers at once (the file and memory stores do) and the pull is not
        held, the response is returned directly: no coroutine, no Deferred chain.
        """
        header = PullMessageRequestHeader.from_request(request)
        checked = self._check(request, header)
        if isinstance(checked, RemotingCommand):
            return checked
        subscription = checked
        got = self._get(header, subscription)
        if not (got.called and not got.paused and type(got.result) is GetMessageResult):
            return Deferred.fromCoroutine(
                self._finish(connection, request, header, subscription, got)
            )
        response, code = self._answer(request, header, got.result)
        self._commit(header)
        timeout_ms = self._hold_ms(header, code)
        if timeout_ms <= 0:
            return response
        return Deferred.fromCoroutine(
            self._hold_then_pull(connection, request, header, subscription, timeout_ms)
        )

    async def _finish(
        self,
        connection: IRemotingConnection,
        request: RemotingCommand,
        header: PullMessageRequestHeader,
        subscription: SubscriptionData,
        got: Deferred[GetMessageResult],
    ) -> RemotingCommand | None:
        """The pull when the store answers later: answer, commit, maybe hold and pull again."""
        response, code = self._answer(request, header, await got)
        self._commit(header)
        timeout_ms = self._hold_ms(header, code)
        if timeout_ms <= 0:
            return response
        return await self._hold_then_pull(connection, request, header, subscription, timeout_ms)

    def _commit(self, header: PullMessageRequestHeader) -> None:
        """The offset committed with the pull (commit-offset sysflag), on a master."""
        if header.sys_flag & FLAG_COMMIT_OFFSET and self.config.is_master:
            self.offsets.commit_offset(
                header.consumer_group, header.topic, header.queue_id, header.commit_offset
            )

    def _hold_ms(self, header: PullMessageRequestHeader, code: int) -> int:
        """How long to hold a pull that found nothing (0: answer now)."""
        if code != ResponseCode.PULL_NOT_FOUND or not header.sys_flag & FLAG_SUSPEND:
            return 0
        if self.config.long_polling_enable:
            return header.suspend_timeout_ms
        return self.config.short_polling_time_ms

    async def _hold_then_pull(
        self,
        connection: IRemotingConnection,
        request: RemotingCommand,
        header: PullMessageRequestHeader,
        subscription: SubscriptionData,
        timeout_ms: int,
    ) -> RemotingCommand | None:
        """Suspend the pull until a message arrives or the timeout; then answer what is there."""
        held = self.hold.hold(
            header.topic,
            header.queue_id,
            header.queue_offset,
            subscription,
            timeout_ms / 1000.0,
            connection,
        )
        try:
            await held
        except CancelledError:  # the connection closed: nobody to answer
            return None
        result = await self._get(header, subscription)
        response, _ = self._answer(request, header, result)
        return response

    def _check(
        self, request: RemotingCommand, header: PullMessageRequestHeader
    ) -> SubscriptionData | RemotingCommand:
        def error(code: int, remark: str) -> RemotingCommand:
            return new_response(request, code, remark, {})

        if not is_readable(self.identity.permission):
            return error(
                ResponseCode.NO_PERMISSION,
                f"the broker[{self.identity.broker_ip1}] pulling message is forbidden",
            )
        group_config = self.groups.find_or_create(header.consumer_group)
        if group_config is None:
            return error(
                ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                f"subscription group [{header.consumer_group}] does not exist, " + FAQ.strip(),
            )
        if not group_config.consume_enable:
            return error(
                ResponseCode.NO_PERMISSION,
                f"subscription group no permission, {header.consumer_group}",
            )
        topic_config = self.topics.select(header.topic)
        if topic_config is None:
            return error(
                ResponseCode.TOPIC_NOT_EXIST,
                f"topic[{header.topic}] not exist, apply first please!" + FAQ,
            )
        if not is_readable(topic_config.perm):
            return error(
                ResponseCode.NO_PERMISSION,
                f"the topic[{header.topic}] pulling message is forbidden",
            )
        if header.queue_id < 0 or header.queue_id >= topic_config.read_queue_nums:
            return error(
                ResponseCode.SYSTEM_ERROR,
                f"queueId[{header.queue_id}] is illegal, topic:[{header.topic}] "
                f"topicConfig.readQueueNums:[{topic_config.read_queue_nums}] "
                f"consumer:[{header.consumer_group}]",
            )
        if header.sys_flag & FLAG_SUBSCRIPTION:
            if header.expression_type != EXPRESSION_TAG and self.sql is not None:
                return _refused_or(
                    request,
                    self.sql.from_request(
                        header.topic,
                        header.subscription,
                        header.expression_type,
                        header.sub_version,
                    ),
                )
            if header.expression_type != EXPRESSION_TAG and not self.config.enable_property_filter:
                return error(
                    ResponseCode.SYSTEM_ERROR,
                    "The broker does not support consumer to filter message by "
                    + header.expression_type,
                )
            return build_subscription(
                header.topic, header.subscription, header.sub_version, header.expression_type
            )
        info = self.consumers.group(header.consumer_group)
        if info is None:
            return error(
                ResponseCode.SUBSCRIPTION_NOT_EXIST, "the consumer's group info not exist" + FAQ
            )
        if not group_config.consume_broadcast_enable and info.message_model == "BROADCASTING":
            return error(
                ResponseCode.NO_PERMISSION,
                f"the consumer group[{header.consumer_group}] can not consume by broadcast way",
            )
        sub = info.subscriptions.get(header.topic)
        if sub is None:
            return error(
                ResponseCode.SUBSCRIPTION_NOT_EXIST, "the consumer's subscription not exist" + FAQ
            )
        if sub.sub_version < header.sub_version:
            return error(
                ResponseCode.SUBSCRIPTION_NOT_LATEST, "the consumer's subscription not latest"
            )
        if sub.expression_type != EXPRESSION_TAG and self.sql is not None:
            return _refused_or(
                request, self.sql.from_heartbeat(sub, header.consumer_group, header.sub_version)
            )
        if sub.expression_type != EXPRESSION_TAG and not self.config.enable_property_filter:
            return error(
                ResponseCode.SYSTEM_ERROR,
                "The broker does not support consumer to filter message by " + sub.expression_type,
            )
        return sub

    def _get(
        self, header: PullMessageRequestHeader, subscription: SubscriptionData
    ) -> Deferred[GetMessageResult]:
        if subscription.expression_type != EXPRESSION_TAG and self.sql is not None:
            return self.sql.get_messages(
                self.store,
                header.topic,
                header.queue_id,
                header.queue_offset,
                max(1, header.max_msg_nums),
                subscription,
            )
        tags_filter = None if subscription.matches_all else subscription.code_set
        return self.store.get_messages(
            header.topic,
            header.queue_id,
            header.queue_offset,
            max(1, header.max_msg_nums),
            tags_filter,
        )

    def _answer(
        self,
        request: RemotingCommand,
        header: PullMessageRequestHeader,
        result: GetMessageResult,
    ) -> tuple[RemotingCommand, int]:
        """The PULL response to a store result, and its code."""
        code = response_code(result, header.queue_offset)
        next_offset = result.next_begin_offset
        if not self.config.is_master and code == ResponseCode.PULL_OFFSET_MOVED:
            code = ResponseCode.PULL_RETRY_IMMEDIATELY
            next_offset = header.queue_offset
        if code == ResponseCode.PULL_OFFSET_MOVED:
            self.log.info(
                "Pull offset moved: group {group} {topic}:{qid} requested {offset}, "
                "corrected to {next}",
                group=header.consumer_group,
                topic=header.topic,
                qid=header.queue_id,
                offset=header.queue_offset,
                next=next_offset,
            )
        # The wire strings directly (what new_response would convert them to).
        response = RemotingCommand(
            code=int(code),
            opaque=request.opaque,
            flag=FLAG_RESPONSE,
            remark=result.status.value,
            ext_fields={
                "suggestWhichBrokerId": "0",
                "nextBeginOffset": str(next_offset),
                "minOffset": str(result.min_offset),
                "maxOffset": str(result.max_offset),
            },
            body=result.body() if code == ResponseCode.SUCCESS else b"",
            serialize_type=request.serialize_type,
            ext_fields_present=True,
        )
        return response, code
