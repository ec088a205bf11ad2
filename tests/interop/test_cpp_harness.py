"""The C++ client harness itself: spawning, events, bounded waits, stopping and killing children."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from rmq.common.asyncutil import global_reactor
from tests.support.cpp import CppHarness, CppScriptError, CppTimeoutError, cpp_log_text
from tests.support.cpp_scripts.cppcommon import body_fields, body_from_spec, pattern_body


class BodySpecTests(TestCase):
    def test_pattern_bodies_are_deterministic_and_nul_free(self) -> None:
        """One seed gives the same bytes every time, never a NUL (bodies are read as C strings)."""
        body = pattern_body(7, 100_000)
        self.assertEqual(body, pattern_body(7, 100_000))
        self.assertNotEqual(body, pattern_body(8, 100_000))
        self.assertEqual(len(body), 100_000)
        self.assertNotIn(b"\x00", body)

    def test_specs(self) -> None:
        """Text specs are UTF-8, b64 specs decoded, and small bodies are echoed in events."""
        self.assertEqual(body_from_spec("h\u00e9"), "h\u00e9".encode())
        self.assertEqual(body_from_spec({"b64": "AAE="}), b"\x00\x01")
        self.assertEqual(body_from_spec({"pattern": [1, 10]}), pattern_body(1, 10))
        self.assertEqual(body_fields(b"ab")["body_b64"], "YWI=")
        self.assertNotIn("body_b64", body_fields(pattern_body(1, 5000)))


class HarnessTests(TestCase):
    def setUp(self) -> None:
        self.reactor = global_reactor()
        self.harness = CppHarness(self, self.reactor)

    async def test_events_noise_and_exit_code(self) -> None:
        """JSON lines become events in order, other lines noise, and the exit code is reported."""
        proc = self.harness.spawn(
            "fake",
            {
                "noise": "not json",
                "events": [{"event": "a", "n": 1}, {"event": "b", "n": 2}],
                "code": 3,
            },
        )
        code = await proc.finished(timeout=20)
        self.assertEqual(code, 3)
        self.assertEqual([ev["event"] for ev in proc.events], ["a", "b"])
        self.assertEqual(proc.noise, ["not json"])
        first = await proc.wait_event("b", timeout=1)
        self.assertEqual(first["n"], 2)

    async def test_child_home_and_cwd_are_its_temp_dir(self) -> None:
        """The child's HOME and cwd are its own directory in the test's temp dir."""
        proc = self.harness.spawn("fake", {"report_env": True})
        env = await proc.wait_event("env", timeout=20)
        self.assertEqual(env["home"], str(proc.home))
        self.assertEqual(env["cwd"], str(proc.home))
        self.assertTrue(str(proc.home).startswith(os.path.abspath("")))

    async def test_wait_for_count(self) -> None:
        """wait_for_count fires with the first N matching events once they arrived."""
        events = [{"event": "x", "i": i} for i in range(5)]
        proc = self.harness.spawn("fake", {"events": events, "then": "wait"})
        got = await proc.wait_for_count(lambda ev: ev["event"] == "x" and ev["i"] % 2 == 0, 3, 20)
        self.assertEqual([ev["i"] for ev in got], [0, 2, 4])

    async def test_wait_fails_when_child_exits_first(self) -> None:
        """A wait that can no longer match fails with CppScriptError naming stderr when it exits."""
        proc = self.harness.spawn("fake", {"stderr": "boom happened", "code": 1})
        with self.assertRaises(CppScriptError) as ctx:
            await proc.wait_event("never", timeout=20)
        self.assertIn("boom happened", str(ctx.exception))

    async def test_wait_times_out_on_the_clock(self) -> None:
        """A wait for an event that never comes fails with CppTimeoutError and leaves no timer."""
        proc = self.harness.spawn("fake", {"then": "wait", "events": [{"event": "ready"}]})
        await proc.wait_event("ready", timeout=20)
        with self.assertRaises(CppTimeoutError):
            await proc.wait_event("never", timeout=0.2)
        self.assertEqual(proc._waiters, [])

    async def test_stop_command(self) -> None:
        """stop() sends the stop command; a cooperative child reports it and exits with 0."""
        proc = self.harness.spawn("fake", {"then": "wait", "events": [{"event": "ready"}]})
        await proc.wait_event("ready", timeout=20)
        code = await proc.stop(grace=20)
        self.assertEqual(code, 0)
        self.assertEqual(proc.events[-1]["event"], "stopped")

    async def test_hung_child_is_killed_after_grace(self) -> None:
        """A child that ignores stdin and SIGTERM is SIGKILLed by PID after the grace period."""
        proc = self.harness.spawn("fake", {"then": "hang"})
        await proc.wait_event("hanging", timeout=20)
        code = await proc.stop(grace=0.2)
        self.assertIsNone(code)
        self.assertEqual(proc.exit_signal, 9)


class CppClientWithoutServerTests(TestCase):
    async def test_producer_without_nameserver(self) -> None:
        """The real C++ producer fails a send when no NameServer answers and logs under HOME."""
        reactor = global_reactor()
        # A port nobody listens on any more: connections are refused at once. (A server that
        # accepts and drops the connection makes the client wait 5 s for its route request.)
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        closed_port = port.getHost().port
        await port.stopListening()
        harness = CppHarness(self, reactor)
        proc = harness.spawn(
            "producer",
            {
                "namesrv": f"127.0.0.1:{closed_port}",
                "group": "PG_NO_NAMESRV",
                "topic": "TopicNoRoute",
                "timeout_ms": 1000,
                "messages": [{"body": "hello"}],
            },
        )
        failed = await proc.wait_event("send_failed", timeout=30)
        self.assertIn("No route info", failed["error"])
        self.assertEqual(await proc.finished(timeout=30), 0)
        self.assertTrue((Path(proc.home) / "logs" / "rocketmq-cpp").is_dir())
        self.assertIn("TopicNoRoute", cpp_log_text(proc))
