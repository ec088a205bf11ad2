"""HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38): protocol §5.4, §5.5.

Java counterparts: ``ClientManageProcessor`` and the consumer-list part of
``ConsumerManageProcessor``; :class:`ConsumerIdsNotifier` is Java's
``DefaultConsumerIdsChangeListener`` (NOTIFY_CONSUMER_IDS_CHANGED, §6.2).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from rmq.broker.clients import ConsumerManager, ProducerManager, parse_heartbeat
from rmq.broker.codetable import CodeTableProcessor
from rmq.broker.interfaces import IConsumerIdsChangeListener
from rmq.broker.subscription import SubscriptionGroupManager
from rmq.broker.topic import PERM_READ, PERM_WRITE, TopicConfigManager, retry_topic
from rmq.common import fastjson
from rmq.common.errors import RMQError
from rmq.remoting.codes import LanguageCode, RequestCode, ResponseCode
from rmq.remoting.command import RemotingCommand, new_request, new_response
from rmq.remoting.interfaces import IRemotingConnection


def language_name(code: int) -> str:
    """``LanguageCode`` name of a header language code (``OTHER`` when unknown)."""
    try:
        return LanguageCode(code).name
    except ValueError:
        return "OTHER"


@implementer(IConsumerIdsChangeListener)
class ConsumerIdsNotifier:
    """Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every member connection at once."""

    log = Logger()

    def consumer_ids_changed(self, group: str, connections: list[Any]) -> None:
        """Notify each connection of ``group``; a failing connection does not stop the others."""
        for connection in connections:
            request = new_request(
                RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": group}, oneway=True
            )
            try:
                connection.send_oneway(request)
            except Exception:
                self.log.failure(
                    "Could not notify {addr} of group {group}",
                    addr=getattr(connection, "remote_address", "?"),
                    group=group,
                )


class ClientManageProcessor(CodeTableProcessor):
    """Codes 34, 35 and 38."""

    log = Logger()

    def __init__(
        self,
        topics: TopicConfigManager,
        groups: SubscriptionGroupManager,
        consumers: ConsumerManager,
        producers: ProducerManager,
    ) -> None:
        self.topics = topics
        self.groups = groups
        self.consumers = consumers
        self.producers = producers
        self.handlers = {
            RequestCode.HEART_BEAT: self.heart_beat,
            RequestCode.UNREGISTER_CLIENT: self.unregister_client,
            RequestCode.GET_CONSUMER_LIST_BY_GROUP: self.get_consumer_list_by_group,
        }

    def heart_beat(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Register the sender's producer and consumer groups (ClientManageProcessor.heartBeat)."""
        try:
            data = parse_heartbeat(request.body)
        except ValueError as e:
            raise RMQError(f"bad heartbeat body: {e}", ResponseCode.SYSTEM_ERROR) from e
        language = language_name(request.language)
        for consumer in data.consumers:
            if not consumer.group_name:
                continue
            notify = True
            config = self.groups.find_or_create(consumer.group_name)
            if config is not None:
                notify = config.notify_consumer_ids_changed_enable
                if config.retry_queue_nums > 0:
                    self.topics.create_topic_if_absent(
                        retry_topic(consumer.group_name),
                        config.retry_queue_nums,
                        PERM_READ | PERM_WRITE,
                    )
            self.consumers.register_consumer(
                consumer, connection, data.client_id, language, request.version, notify
            )
        for group in data.producer_groups:
            if group:
                self.producers.register_producer(
                    group, connection, data.client_id, language, request.version
                )
        return new_response(request)

    def unregister_client(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """Remove the sender from the named groups (an empty name means absent, as cpp sends)."""
        producer_group = request.ext_fields.get("producerGroup") or ""
        consumer_group = request.ext_fields.get("consumerGroup") or ""
        if producer_group:
            self.producers.unregister_producer(producer_group, connection)
        if consumer_group:
            config = self.groups.find(consumer_group)
            notify = config.notify_consumer_ids_changed_enable if config else True
            self.consumers.unregister_consumer(consumer_group, connection, notify)
        return new_response(request, ext_fields={})

    def get_consumer_list_by_group(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand:
        """``{"consumerIdList":[...]}`` of the live members, or SYSTEM_ERROR when none."""
        group = request.ext_str("consumerGroup")
        ids = self.consumers.client_ids(group)
        if not ids:
            self.log.warn("GET_CONSUMER_LIST_BY_GROUP: no consumer online in {group}", group=group)
            return new_response(
                request, ResponseCode.SYSTEM_ERROR, f"no consumer for this group, {group}", {}
            )
        return new_response(request, ext_fields={}, body=fastjson.dumps({"consumerIdList": ids}))
