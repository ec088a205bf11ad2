"""Index key hashing: the memoised split hash equals Java ``String.hashCode``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.message import UniqueIdGenerator, java_string_hash
from rmq.store.index import _string_hash, key_hash


class KeyHashTests(SynchronousTestCase):
    """``_string_hash``/``key_hash`` against the reference ``java_string_hash``."""

    def test_unique_keys(self) -> None:
        """Topic#UNIQ_KEY keys (the common index key) hash as Java does."""
        gen = UniqueIdGenerator("10.0.0.1")
        for _ in range(3000):
            key = "BenchTopic#" + gen.next_id()
            self.assertEqual(_string_hash(key), java_string_hash(key))

    def test_known_values(self) -> None:
        """Fixed keys, short and non-ASCII ones included, match Java's values."""
        for key, want in (("", 0), ("a", 97), ("abc", 96354), ("T#k1", java_string_hash("T#k1"))):
            self.assertEqual(_string_hash(key), want)
        self.assertEqual(key_hash("polygenelubricants"), 0)  # hashCode is Integer.MIN_VALUE

    @given(st.text(max_size=60))
    def test_any_text(self, key: str) -> None:
        """Any string (surrogate pairs in the tail too) hashes as Java String.hashCode."""
        self.assertEqual(_string_hash(key), java_string_hash(key))
        self.assertEqual(_string_hash(key), java_string_hash(key))  # memoised path
