"""Tests for rmq.common.message against the RocketMQ 4.9.7 vectors."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rmq.common import message as m

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
if not VECTORS.exists():  # pragma: no cover - repository checked out elsewhere
    VECTORS = Path("/work/shared/vectors")


def _hex(name: str) -> bytes:
    return bytes.fromhex((VECTORS / name).read_text().strip())


COMMITLOG = "store/commitlog-00000000000000000000.first-8299-bytes.hex"


class StoredRecordVectorTests(SynchronousTestCase):
    """The 4.9.7 commit-log excerpt decodes record for record."""

    def setUp(self) -> None:
        self.data = _hex(COMMITLOG)
        self.records = m.decode_messages(self.data, check_crc=True, decompress=False)

    def test_all_records_decode(self) -> None:
        """All 34 records decode, back to back, ending at byte 8299, with valid CRCs."""
        self.assertEqual(len(self.records), 34)
        self.assertEqual(sum(r.store_size for r in self.records), 8299)
        pos = 0
        for r in self.records:
            self.assertEqual(r.commit_log_offset, pos)
            pos += r.store_size

    def test_first_record_fields(self) -> None:
        """The first record is TopicJ/1 'hello java' with tags, keys, UNIQ_KEY and store host."""
        r = self.records[0]
        self.assertEqual(r.store_size, 226)
        self.assertEqual((r.topic, r.queue_id, r.queue_offset), ("TopicJ", 1, 0))
        self.assertEqual(r.body, b"hello java")
        self.assertEqual(r.tags, "TagA")
        self.assertEqual(r.keys, ["k1", "k2"])
        self.assertEqual(r.unique_key, "FD0000000000000000000000000000024A1530946E096B859F6C0000")
        self.assertEqual(r.msg_id, r.unique_key)
        self.assertEqual(r.store_host, "127.0.0.1:40911")
        self.assertEqual(r.offset_msg_id, "7F00000100009FCF0000000000000000")
        self.assertEqual(r.properties["CLUSTER"], "DefaultCluster")

    def test_reencode_byte_for_byte(self) -> None:
        """Re-encoding each decoded record with encode_stored_record gives the original bytes."""
        for r in self.records:
            bm = m.BrokerMessage(
                topic=r.topic,
                queue_id=r.queue_id,
                body=r.body,
                flag=r.flag,
                properties=r.properties,
                properties_str=self._props_str(r),
                born_timestamp=r.born_timestamp,
                born_host=r.born_host,
                store_host=r.store_host,
                sys_flag=r.sys_flag,
                reconsume_times=r.reconsume_times,
                prepared_transaction_offset=r.prepared_transaction_offset,
            )
            raw = m.encode_stored_record(bm, r.queue_offset, r.commit_log_offset, r.store_timestamp)
            pos = r.commit_log_offset
            self.assertEqual(raw, self.data[pos : pos + r.store_size])

    def _props_str(self, r: m.MessageExt) -> str:
        """The raw property string of a record (order preserved) taken from the vector bytes."""
        end = r.commit_log_offset + r.store_size
        # The property string is the last field: find its length prefix by walking back.
        for start in range(end, r.commit_log_offset, -1):
            (n,) = struct.unpack_from(">h", self.data, start - 2)
            if start + n == end:
                return self.data[start:end].decode()
        raise AssertionError("no property string")

    def test_compressed_body_inflates(self) -> None:
        """A record with sysflag 769 (zlib type) has its 5000-byte body inflated on decode."""
        inflated = m.decode_messages(self.data)
        r = inflated[2]
        self.assertEqual(r.sys_flag, 769)
        self.assertEqual(len(r.body), 5000)
        self.assertLess(len(self.records[2].body), 5000)

    def test_consume_queue_units_match_records(self) -> None:
        """Every consume-queue unit in the vectors points at a record of its size and tag hash."""
        by_offset = {r.commit_log_offset: r for r in self.records}
        for path in sorted((VECTORS / "store").glob("consumequeue-*.hex")):
            data = bytes.fromhex(path.read_text().strip())
            topic = path.name.split("-")[1]
            for k in range(len(data) // 20):
                off, size, code = struct.unpack_from(">qiq", data, 20 * k)
                if off not in by_offset:
                    continue  # excerpt covers only the first 8299 bytes
                r = by_offset[off]
                self.assertEqual((r.store_size, r.topic, r.queue_offset), (size, topic, k))
                if topic != "SCHEDULE_TOPIC_XXXX":
                    self.assertEqual(code, m.tags_hash(r.tags))

    def test_bad_crc_detected(self) -> None:
        """A flipped body byte makes check_crc decoding fail with RecordError."""
        data = bytearray(self.data[:226])
        data[88] ^= 0xFF
        self.assertRaises(m.RecordError, m.decode_message, bytes(data), check_crc=True)

    def test_truncated_record_rejected(self) -> None:
        """Every prefix of a record shorter than its TOTALSIZE is rejected."""
        for cut in range(0, 226):
            self.assertRaises(m.RecordError, m.decode_message, self.data[:cut])

    def test_bad_magic_rejected(self) -> None:
        """A record with a wrong magic code is rejected."""
        data = bytearray(self.data[:226])
        data[4] = 0
        self.assertRaises(m.RecordError, m.decode_message, bytes(data))


class FuzzTests(SynchronousTestCase):
    """Garbage never escapes as anything but RecordError/ValueError."""

    @given(st.binary(max_size=400), st.integers(min_value=0, max_value=300))
    def test_decode_garbage(self, noise: bytes, cut: int) -> None:
        """Random bytes, and a real record with random bytes spliced in, decode or raise
        RecordError."""
        base = bytearray(_hex(COMMITLOG)[:226])
        base[cut % 226 : cut % 226 + len(noise)] = noise
        for data in (noise, bytes(base)):
            try:
                m.decode_messages(data, check_crc=True)
            except m.RecordError:
                pass

    @given(st.binary(max_size=300))
    def test_decode_batch_garbage(self, noise: bytes) -> None:
        """Random batch bodies decode or raise ValueError."""
        try:
            m.decode_batch(noise, "T")
        except ValueError:
            pass


class PropertiesTests(SynchronousTestCase):
    """Property string codec."""

    def test_java_style(self) -> None:
        """Java style has no trailing separator; the reader accepts trailing ones too."""
        s = m.properties_to_string({"A": "1", "B": "2"})
        self.assertEqual(s, "A\x011\x02B\x012")
        self.assertEqual(m.string_to_properties(s + "\x02"), {"A": "1", "B": "2"})

    def test_drops_empty_and_keeps_last(self) -> None:
        """Pairs with an empty name or value are dropped; a duplicate name keeps the last value."""
        s = "\x01x\x02A\x01\x02W\x01true\x02W\x01false\x02\x02"
        self.assertEqual(m.string_to_properties(s), {"W": "false"})

    @given(
        st.dictionaries(
            st.text(min_size=1).filter(lambda s: "\x01" not in s and "\x02" not in s),
            st.text(min_size=1).filter(lambda s: "\x01" not in s and "\x02" not in s),
        )
    )
    def test_round_trip(self, props: dict[str, str]) -> None:
        """Any properties without separators round-trip."""
        self.assertEqual(m.string_to_properties(m.properties_to_string(props)), props)


class HashAndIdTests(SynchronousTestCase):
    """Tags hash, offset message ids and unique ids."""

    def test_tags_hash(self) -> None:
        """Tag hashes match Java String.hashCode as observed in the vectors."""
        self.assertEqual(m.tags_hash("TagA"), 2598919)
        self.assertEqual(m.tags_hash("TagB"), 2598920)
        self.assertEqual(m.tags_hash("d"), 100)
        self.assertEqual(m.tags_hash(None), 0)
        self.assertEqual(m.tags_hash(""), 0)
        self.assertEqual(m.java_string_hash("TopicJ#k1"), -1902972530)

    @given(st.text(max_size=60))
    def test_java_hash_matches_reference(self, s: str) -> None:
        """The chunked/cached hash equals the plain UTF-16 loop for any string."""
        h = 0
        for (c,) in struct.iter_unpack(">H", s.encode("utf-16-be")):
            h = (31 * h + c) & 0xFFFFFFFF
        self.assertEqual(m.java_string_hash(s), h - (1 << 32) if h & 0x80000000 else h)

    def test_tags_hash_non_bmp(self) -> None:
        """Characters outside the BMP hash as two UTF-16 code units like Java."""
        # Java: "\uD83D\uDE00".hashCode() == 55357 * 31 + 56832
        self.assertEqual(m.tags_hash("\U0001f600"), 55357 * 31 + 56832)

    def test_offset_msg_id(self) -> None:
        """The observed offset id decodes to 127.0.0.1:40911 @ 3452 and re-encodes."""
        d = m.decode_offset_msg_id("7F00000100009FCF0000000000000D7C")
        self.assertEqual((d.host, d.port, d.offset), ("127.0.0.1", 40911, 3452))
        self.assertEqual(d.address, "127.0.0.1:40911")
        self.assertEqual(
            m.create_offset_msg_id("127.0.0.1", 40911, 3452), "7F00000100009FCF0000000000000D7C"
        )

    def test_offset_msg_id_v6(self) -> None:
        """IPv6 offset ids are 56 hex chars and round-trip."""
        s = m.create_offset_msg_id("fd00::2", 10911, 7)
        self.assertEqual(len(s), 56)
        self.assertEqual(m.decode_offset_msg_id(s), m.OffsetMsgId("fd00::2", 10911, 7))
        self.assertRaises(ValueError, m.decode_offset_msg_id, "ABCD")

    def test_unique_id_layout(self) -> None:
        """Unique ids follow Java's layout: ip, pid, loader hash, ms since month start, counter."""
        t = time.mktime((2026, 11, 2, 0, 0, 1, 0, 0, -1))
        gen = m.UniqueIdGenerator("127.0.0.1", pid=0x4A15, loader_hash=0x30946E09, now=lambda: t)
        a, b = gen.next_id(), gen.next_id()
        self.assertEqual(len(a), 32)
        self.assertEqual(a[:20], "7F0000014A1530946E09")
        self.assertEqual(int(a[20:28], 16), (86400 + 1) * 1000)
        self.assertEqual(int(b[28:], 16), int(a[28:], 16) + 1)


class BatchTests(SynchronousTestCase):
    """Batch body codec."""

    def test_java_send_batch_vector(self) -> None:
        """The body of the Java batch send vector decodes to three messages with UNIQ_KEYs."""
        frame = _hex("java-send-batch.req.hex")
        (header_len,) = struct.unpack_from(">i", frame, 4)
        header_len &= 0xFFFFFF
        body = frame[8 + header_len :]
        msgs = m.decode_batch(body, "T")
        self.assertEqual(len(msgs), 3)
        for msg in msgs:
            self.assertIn(m.UNIQ_KEY, msg.properties)
        self.assertEqual(m.encode_batch(msgs), body)

    def test_round_trip(self) -> None:
        """encode_batch/decode_batch round-trip and reject truncation."""
        msgs = [m.Message("T", b"x" * n, flag=n, properties={"K": str(n)}) for n in range(5)]
        raw = m.encode_batch(msgs)
        self.assertEqual(m.decode_batch(raw, "T"), msgs)
        self.assertRaises(ValueError, m.decode_batch, raw[:-1], "T")


class RecordCodecTests(SynchronousTestCase):
    """encode_stored_record against decode_message."""

    def test_round_trip_v6_and_compressed(self) -> None:
        """A record with IPv6 hosts and a compressed body decodes to the original message."""
        body = zlib.compress(b"a" * 10000)
        bm = m.BrokerMessage(
            topic="T",
            queue_id=3,
            body=body,
            properties={m.TAGS: "x", m.KEYS: "a b"},
            born_host="[fd00::1]:1234",
            store_host="fd00::2:10911",
            sys_flag=m.MessageSysFlag.COMPRESSED_FLAG,
            born_timestamp=5,
        )
        raw = m.encode_stored_record(bm, 7, 100, 9)
        self.assertEqual(
            len(raw),
            m.record_size(
                len(body), 1, len(bm.properties_str or m.properties_to_string(bm.properties)), 0x30
            ),
        )
        r = m.decode_message(raw, check_crc=True)
        self.assertEqual(r.body, b"a" * 10000)
        self.assertEqual(r.born_host, "fd00::1:1234")
        self.assertEqual(r.store_host, "fd00::2:10911")
        self.assertEqual((r.queue_offset, r.commit_log_offset, r.store_timestamp), (7, 100, 9))
        self.assertEqual(len(r.offset_msg_id), 56)
        self.assertEqual(bm.keys_to_index(), ["a", "b"])

    def test_from_message(self) -> None:
        """BrokerMessage.from_message computes the tags code and property string."""
        bm = m.BrokerMessage.from_message(m.Message("T", b"b", properties={m.TAGS: "TagA"}), 1)
        self.assertEqual(bm.tags_code, 2598919)
        self.assertEqual(bm.properties_str, "TAGS\x01TagA")

    def test_long_topic_rejected(self) -> None:
        """A topic over 127 bytes cannot be stored."""
        bm = m.BrokerMessage(topic="t" * 128, queue_id=0, body=b"")
        self.assertRaises(ValueError, m.encode_stored_record, bm, 0, 0, 0)
