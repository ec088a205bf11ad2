"""Interfaces of the remoting layer: a connection, and a request processor behind dispatch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from rmq.remoting.command import RemotingCommand


class IRemotingConnection(Interface):
    """One remoting connection, usable in both directions (per Java's Netty ``Channel`` use).

    A server-side processor may call ``invoke``/``send_oneway`` on the connection a request
    arrived on, to talk to the client (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE).
    """

    remote_address = Attribute('"ip:port" of the peer (str)')

    def invoke(command: RemotingCommand, timeout: float) -> Deferred[RemotingCommand]:
        """Send a request and wait for its response (matched by ``opaque``).

        ``timeout`` is in seconds, on the connection's injected clock. Fires with the response
        command whatever its code. Fails with RemotingTimeoutError when no response came in time,
        RemotingSendRequestError when the connection is (or gets) closed before the answer, and
        HeaderError when the command cannot be encoded.
        """

    def send_oneway(command: RemotingCommand) -> None:
        """Send a request with the ONEWAY flag set; no response is expected.

        Fire and forget: on a closed connection the command is dropped with a warning.
        """

    def close() -> None:
        """Close the connection; pending requests fail with RemotingSendRequestError."""

    def when_closed() -> Deferred[None]:
        """A fresh Deferred per call that fires (with None) once the connection is lost."""


class IRequestProcessor(Interface):
    """Handles requests with the codes it is registered for (per Java's NettyRequestProcessor)."""

    def process_request(
        connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand | None | Deferred[RemotingCommand | None]:
        """Return (or fire with) the response, or None to send nothing.

        The dispatcher fixes the response's opaque, flag and serialize type. Raise (or fail with)
        an RMQError to answer with its code and remark; any other exception is logged and answered
        with SYSTEM_ERROR. Oneway requests are never answered, whatever is returned.
        """
