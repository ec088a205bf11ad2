"""Tests for rmq.common.config: java.util.Properties parsing and typed config loading."""

from __future__ import annotations

import os

import attrs
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.config import (
    apply_properties,
    config_keys,
    config_to_properties,
    format_properties,
    load_config,
    parse_properties,
)


def _positive(value: int) -> None:
    if value <= 0:
        raise ValueError("must be positive")


@attrs.frozen
class SampleConfig:
    """A config class like the real ones."""

    listen_port: int = attrs.field(default=9876, metadata={"key": "listenPort", "check": _positive})
    broker_name: str = attrs.field(default="broker-a", metadata={"key": "brokerName"})
    enabled: bool = attrs.field(default=False, metadata={"key": "orderMessageEnable"})
    ratio: float = attrs.field(default=0.75, metadata={"key": "diskMaxUsedSpaceRatio"})
    home: str | None = attrs.field(default=None, metadata={"key": "rocketmqHome"})
    role: str = attrs.field(
        default="ASYNC_MASTER",
        metadata={
            "key": "brokerRole",
            "parse": lambda t: {"SLAVE": "SLAVE", "ASYNC_MASTER": "ASYNC_MASTER"}[t],
        },
    )


class ParsePropertiesTests(SynchronousTestCase):
    def test_separators_comments_and_whitespace(self) -> None:
        """'=', ':' and whitespace separate keys; comments and blank lines are skipped."""
        text = "# comment\n! also\n\n  a=1\nb : 2\nc 3\nd=\ne\nf = x = y \n"
        self.assertEqual(
            parse_properties(text),
            {"a": "1", "b": "2", "c": "3", "d": "", "e": "", "f": "x = y "},
        )

    def test_escapes_and_continuations(self) -> None:
        """Backslash escapes are decoded and an odd trailing backslash continues the line."""
        text = "path=/a/\\\n    b\\tc\nk\\=ey=v\\u00e9\r\nlast=x\\\\\n"
        self.assertEqual(
            parse_properties(text), {"path": "/a/b\tc", "k=ey": "v\u00e9", "last": "x\\"}
        )

    def test_later_key_wins(self) -> None:
        """A repeated key keeps its last value."""
        self.assertEqual(parse_properties("a=1\na=2"), {"a": "2"})

    def test_format(self) -> None:
        """format_properties writes key=value lines, each ending with a newline."""
        self.assertEqual(format_properties({"a": "1", "b": ""}), "a=1\nb=\n")


class LoadConfigTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path: str = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_defaults(self) -> None:
        """Without a file every field keeps its default."""
        self.assertEqual(load_config(SampleConfig), SampleConfig())

    def test_file_then_overrides(self) -> None:
        """File values replace defaults and overrides replace file values, converted by type."""
        path = self.write(
            "listenPort=1234\norderMessageEnable=TRUE\ndiskMaxUsedSpaceRatio=0.5\nbrokerRole=SLAVE\n"
        )
        cfg = load_config(SampleConfig, path, {"listenPort": "4321", "rocketmqHome": "/h"})
        self.assertEqual(
            cfg, SampleConfig(listen_port=4321, enabled=True, ratio=0.5, home="/h", role="SLAVE")
        )

    def test_unknown_key_logged(self) -> None:
        """An unknown key is logged by name and otherwise ignored."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        load_config(SampleConfig, self.write("noSuchKey=1\n"))
        self.assertEqual([e["key"] for e in observer if "key" in e], ["noSuchKey"])

    def test_bad_values_name_the_key(self) -> None:
        """A value that does not convert or fails its check raises UsageError naming the key."""
        for text, key in (
            ("listenPort=abc", "listenPort"),
            ("listenPort=0", "listenPort"),
            ("orderMessageEnable=yes", "orderMessageEnable"),
            ("diskMaxUsedSpaceRatio=x", "diskMaxUsedSpaceRatio"),
            ("brokerRole=BOSS", "brokerRole"),
        ):
            e = self.assertRaises(UsageError, load_config, SampleConfig, self.write(text))
            self.assertIn(key, str(e))

    def test_missing_file(self) -> None:
        """A config file that cannot be read raises UsageError naming the file."""
        path = os.path.join(self.mktemp(), "none.conf")
        e = self.assertRaises(UsageError, load_config, SampleConfig, path)
        self.assertIn("none.conf", str(e))

    def test_apply_and_export(self) -> None:
        """apply_properties returns an updated copy and the unknown keys; export gives text."""
        cfg, unknown = apply_properties(SampleConfig(), {"orderMessageEnable": "true", "zzz": "1"})
        self.assertTrue(cfg.enabled)
        self.assertEqual(unknown, ["zzz"])
        props = config_to_properties(cfg)
        self.assertEqual(props["orderMessageEnable"], "true")
        self.assertEqual(props["listenPort"], "9876")
        self.assertEqual(props["rocketmqHome"], "")
        self.assertEqual(list(props), config_keys(SampleConfig))
        self.assertRaises(UsageError, apply_properties, cfg, {"listenPort": "-1"})
