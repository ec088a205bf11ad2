"""Run the real RocketMQ C++ client (``rocketmq`` 0.4.4) in child processes and follow their events.

The C++ client blocks and starts its own threads, so it never runs inside the test's reactor: each
scenario is a small script under ``tests/support/cpp_scripts/`` started with
``reactor.spawnProcess``. Parameters go in as a JSON file (argv[1]); results come back as JSON lines
on stdout, one event each (``{"event": "sent", ...}``); commands go in as JSON lines on stdin
(``{"cmd": "stop"}``). Each child gets ``HOME`` inside the test's temp dir, so the client's logs
(``$HOME/logs/rocketmq-cpp/``) and local offset files stay there.

Usage, in a ``twisted.trial.unittest.TestCase``::

    harness = CppHarness(self, reactor)
    proc = harness.spawn("producer", {"namesrv": addr, "group": "G", "topic": "T",
                                      "messages": [{"body": "hi", "keys": "k1"}]})
    done = await proc.wait_for(lambda ev: ev["event"] == "done", timeout=30)
    await proc.finished(timeout=10)

Every wait is bounded by a timeout on the injected clock; cleanup stops each child (stdin stop
command, then SIGKILL by PID after a grace period) and waits for it to be reaped, so trial never
leaves children or timers behind.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from twisted.internet import error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

Event = dict[str, Any]

SCRIPTS_DIR = Path(__file__).resolve().parent / "cpp_scripts"

#: How much of a child's stderr is kept for error messages.
_STDERR_KEEP = 64 * 1024


class CppScriptError(Exception):
    """A C++ client script did not behave as the test expected (exited early, bad output)."""


class CppTimeoutError(CppScriptError):
    """A bounded wait on a C++ client script ran out of time."""


class CppProcess(ProcessProtocol):
    """One running script: its events so far, bounded waits on them, and a clean stop.

    ``events`` holds every parsed stdout event in order; ``noise`` every stdout line that was not
    JSON; ``stderr`` the tail of the child's stderr.
    """

    def __init__(self, name: str, clock: IReactorTime, home: Path) -> None:
        self.name = name
        self.home = home
        self._clock = clock
        self.events: list[Event] = []
        self.noise: list[str] = []
        self.stderr = bytearray()
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.ended = False
        self._buffer = b""
        self._waiters: list[tuple[Callable[[list[Event]], Any], Deferred[Any]]] = []
        self._end_waiters: list[Deferred[int | None]] = []

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return None if self.transport is None else self.transport.pid  # type: ignore[attr-defined]

    # -- ProcessProtocol -------------------------------------------------------------------------

    def outReceived(self, data: bytes) -> None:
        """Split stdout into lines; JSON objects become events, anything else noise."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        added = False
        for raw in lines:
            line = raw.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                self.events.append(event)
                added = True
            else:
                self.noise.append(line.decode("utf-8", errors="replace"))
        if added:
            self._check_waiters()

    def errReceived(self, data: bytes) -> None:
        """Keep the tail of stderr for error messages."""
        self.stderr += data
        if len(self.stderr) > _STDERR_KEEP:
            del self.stderr[: len(self.stderr) - _STDERR_KEEP]

    def processEnded(self, reason: Failure) -> None:
        """Record the exit status; fail event waiters that can no longer match, fire end waiters."""
        value = reason.value
        self.exit_code = getattr(value, "exitCode", None)
        self.exit_signal = getattr(value, "signal", None)
        self.ended = True
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(
                CppScriptError(f"{self.name} exited before the awaited event\n{self.describe()}")
            )
        end_waiters, self._end_waiters = self._end_waiters, []
        for d in end_waiters:
            d.callback(self.exit_code)

    # -- waiting ---------------------------------------------------------------------------------

    def _check_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for check, d in waiters:
            result = check(self.events)
            if result is None:
                self._waiters.append((check, d))
            else:
                d.callback(result)

    def wait_until(
        self, check: Callable[[list[Event]], Any], timeout: float, what: str = "condition"
    ) -> Deferred[Any]:
        """Fire with ``check(events)`` as soon as it is not None (checked now and on every event).

        Fails with CppTimeoutError after ``timeout`` seconds on the clock, or CppScriptError if the
        child exits first. The message names ``what`` and shows the child's recent output.
        """
        result = check(self.events)
        if result is not None:
            d: Deferred[Any] = Deferred()
            d.callback(result)
            return d
        if self.ended:
            d = Deferred()
            d.errback(CppScriptError(f"{self.name} exited before {what}\n{self.describe()}"))
            return d
        entry: tuple[Callable[[list[Event]], Any], Deferred[Any]]

        def cancel(_: Deferred[Any]) -> None:
            if entry in self._waiters:
                self._waiters.remove(entry)

        d = Deferred(cancel)
        entry = (check, d)
        self._waiters.append(entry)
        d.addTimeout(timeout, self._clock)

        def timed_out(failure: Failure) -> Failure:
            if failure.check(DeferredTimeout):
                raise CppTimeoutError(
                    f"{self.name}: no {what} within {timeout} s\n{self.describe()}"
                ) from failure.value
            return failure

        d.addErrback(timed_out)
        return d

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float, what: str = "matching event"
    ) -> Deferred[Event]:
        """Fire with the first event (already seen or future) for which ``predicate`` is true."""

        def check(events: list[Event]) -> Event | None:
            for event in events:
                if predicate(event):
                    return event
            return None

        return self.wait_until(check, timeout, what)

    def wait_for_count(
        self,
        predicate: Callable[[Event], bool],
        count: int,
        timeout: float,
        what: str = "matching events",
    ) -> Deferred[list[Event]]:
        """Fire with the first ``count`` events matching ``predicate`` once that many arrived."""

        def check(events: list[Event]) -> list[Event] | None:
            matching = [event for event in events if predicate(event)]
            return matching[:count] if len(matching) >= count else None

        return self.wait_until(check, timeout, f"{count} {what}")

    def wait_event(self, kind: str, timeout: float) -> Deferred[Event]:
        """Fire with the first event whose ``event`` field is ``kind``."""
        return self.wait_for(lambda ev: ev["event"] == kind, timeout, f"{kind!r} event")

    def of_kind(self, kind: str) -> list[Event]:
        """Every event so far whose ``event`` field is ``kind``."""
        return [event for event in self.events if event["event"] == kind]

    def finished(self, timeout: float | None = None) -> Deferred[int | None]:
        """Fire with the exit code (None when killed by a signal) once the child has ended.

        With a ``timeout``, fail with CppTimeoutError if it is still running by then.
        """
        if self.ended:
            return succeed(self.exit_code)

        def cancel(d: Deferred[int | None]) -> None:
            if d in self._end_waiters:
                self._end_waiters.remove(d)

        d: Deferred[int | None] = Deferred(cancel)
        self._end_waiters.append(d)
        if timeout is not None:
            d.addTimeout(timeout, self._clock)

            def timed_out(failure: Failure) -> Failure:
                if failure.check(DeferredTimeout):
                    raise CppTimeoutError(
                        f"{self.name} still running after {timeout} s\n{self.describe()}"
                    ) from failure.value
                return failure

            d.addErrback(timed_out)
        return d

    # -- control ---------------------------------------------------------------------------------

    def send_command(self, command: dict[str, Any]) -> None:
        """Write one JSON command line to the child's stdin (ignored once it has ended)."""
        if self.ended or self.transport is None:
            return
        self.transport.write(json.dumps(command).encode("utf-8") + b"\n")

    def kill(self) -> None:
        """SIGKILL the child by its PID (no-op once it has ended)."""
        if self.ended or self.transport is None:
            return
        try:
            self.transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    async def stop(self, grace: float = 10.0) -> int | None:
        """Ask the child to stop (stdin command, then EOF); SIGKILL it after ``grace`` seconds.

        Returns the exit code (None when it had to be killed). Always waits until it is reaped.
        """
        if self.ended:
            return self.exit_code
        self.send_command({"cmd": "stop"})
        if self.transport is not None:
            self.transport.closeStdin()
        ended = self.finished()
        killer: IDelayedCall = self._clock.callLater(grace, self.kill)
        try:
            return await ended
        finally:
            if killer.active():
                killer.cancel()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the C++ client logged under this child's HOME."""
        return "\n".join(cpp_log_text(self).splitlines()[-lines:])

    def describe(self) -> str:
        """The child's recent output, for failure messages."""
        tail = self.events[-5:]
        err = bytes(self.stderr[-3000:]).decode("utf-8", errors="replace")
        status = (
            f"exit code {self.exit_code}, signal {self.exit_signal}" if self.ended else "running"
        )
        return (
            f"[{self.name}: {status}; {len(self.events)} events; last: {tail}; "
            f"noise: {self.noise[-3:]}; logs in {self.home}]\nstderr tail:\n{err}\n"
            f"C++ client log tail:\n{self.log_tail(15)}"
        )


class _CleanupCase(Protocol):
    def addCleanup(self, f: Callable[..., Any], *args: Any) -> None: ...  # noqa: N802

    def mktemp(self) -> str: ...


class CppHarness:
    """Spawns C++ client scripts for one test and stops all of them at cleanup.

    ``reactor`` must provide ``spawnProcess`` and time (the global reactor in integration tests);
    it is also the clock for every timeout.
    """

    def __init__(self, case: _CleanupCase, reactor: Any, python: str | None = None) -> None:
        self._case = case
        self._reactor = reactor
        self._python = python or sys.executable
        self._root = Path(case.mktemp()).resolve()
        self._root.mkdir(parents=True)
        self._count = 0

    def spawn(
        self,
        script: str,
        params: dict[str, Any],
        name: str | None = None,
        grace: float = 10.0,
    ) -> CppProcess:
        """Start ``cpp_scripts/<script>.py`` with ``params``; stopped (or killed) at cleanup.

        The child runs with ``HOME`` and cwd in its own directory under the test's temp dir.
        """
        self._count += 1
        name = name or f"{script}-{self._count}"
        home = self._root / name
        home.mkdir()
        params_file = home / "params.json"
        params_file.write_text(json.dumps(params), encoding="utf-8")
        env = {
            "HOME": str(home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        proc = CppProcess(name, self._reactor, home)
        script_path = SCRIPTS_DIR / f"{script}.py"
        self._reactor.spawnProcess(
            proc,
            self._python,
            [self._python, str(script_path), str(params_file)],
            env=env,
            path=str(home),
        )

        async def cleanup() -> None:
            await proc.stop(grace)

        self._case.addCleanup(lambda: Deferred.fromCoroutine(cleanup()))
        return proc


def cpp_log_text(proc: CppProcess) -> str:
    """Everything the C++ client logged under the child's HOME (for assertions and debugging)."""
    log_dir = proc.home / "logs" / "rocketmq-cpp"
    if not log_dir.is_dir():
        return ""
    return "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(log_dir.iterdir())
        if p.is_file()
    )
