"""Base of the broker processors that answer several request codes.

Java's processors ``switch`` on the request code and the broker registers each code again by hand;
here a processor's ``handlers`` table (request code → handler) is both the dispatch and what the
broker registers (:meth:`CodeTableProcessor.codes`), so each code is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from types import CoroutineType
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from rmq.common.errors import RMQError
from rmq.remoting.codes import ResponseCode
from rmq.remoting.command import RemotingCommand
from rmq.remoting.dispatch import Dispatcher
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor

#: ``(connection, request)`` → the response, None, a Deferred of either, or a coroutine.
Handler = Callable[[IRemotingConnection, RemotingCommand], Any]


@implementer(IRequestProcessor)
class CodeTableProcessor:
    """A processor dispatching on ``request.code`` through :attr:`handlers` (filled by subclasses).

    A handler's coroutine is run with ``Deferred.fromCoroutine``; other results are returned as
    they are (synchronous answers stay synchronous). A code missing from the table is refused with
    REQUEST_CODE_NOT_SUPPORTED.
    """

    handlers: dict[int, Handler]

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand | None | Deferred[RemotingCommand | None]:
        """Run the handler of the request's code."""
        handler = self.handlers.get(request.code)
        if handler is None:
            raise RMQError(
                f"request type {request.code} not supported",
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
            )
        result = handler(connection, request)
        if type(result) is CoroutineType:
            return Deferred.fromCoroutine(result)
        return result  # type: ignore[no-any-return]

    def codes(self) -> list[int]:
        """The request codes this processor answers."""
        return list(self.handlers)

    def register_with(self, dispatcher: Dispatcher) -> None:
        """Register this processor for each of its codes."""
        for code in self.handlers:
            dispatcher.register(code, self)
