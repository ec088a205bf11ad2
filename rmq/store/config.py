"""Message-store configuration (Java ``MessageStoreConfig``), RocketMQ key names in metadata.

Loadable with ``rmq.common.config.load_config(MessageStoreConfig, path, overrides)``; every field
carries ``metadata={"key": <RocketMQ broker.conf key>}``. Units are in the field names.
"""

from __future__ import annotations

import os
import re

import attrs

ASYNC_FLUSH = "ASYNC_FLUSH"
SYNC_FLUSH = "SYNC_FLUSH"

DEFAULT_DELAY_LEVELS = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _key(name: str) -> dict[str, str]:
    return {"key": name}


def _flush_type(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in (ASYNC_FLUSH, SYNC_FLUSH):
        raise ValueError(f"{attribute.name} must be ASYNC_FLUSH or SYNC_FLUSH, not {value!r}")


@attrs.frozen
class MessageStoreConfig:
    """Store settings with RocketMQ 4.9.x defaults (sizes in bytes, times as the names say)."""

    store_path_root_dir: str = attrs.field(
        default=os.path.join(os.path.expanduser("~"), "store"), metadata=_key("storePathRootDir")
    )
    store_path_commit_log: str = attrs.field(default="", metadata=_key("storePathCommitLog"))
    mapped_file_size_commit_log: int = attrs.field(
        default=1024 * 1024 * 1024, metadata=_key("mappedFileSizeCommitLog")
    )
    mapped_file_size_consume_queue: int = attrs.field(
        default=300_000 * 20, metadata=_key("mappedFileSizeConsumeQueue")
    )
    max_hash_slot_num: int = attrs.field(default=5_000_000, metadata=_key("maxHashSlotNum"))
    max_index_num: int = attrs.field(default=20_000_000, metadata=_key("maxIndexNum"))
    message_index_enable: bool = attrs.field(default=True, metadata=_key("messageIndexEnable"))
    flush_disk_type: str = attrs.field(
        default=ASYNC_FLUSH, validator=_flush_type, metadata=_key("flushDiskType")
    )
    flush_interval_commit_log_ms: int = attrs.field(
        default=500, metadata=_key("flushIntervalCommitLog")
    )
    flush_commit_log_least_pages: int = attrs.field(
        default=4, metadata=_key("flushCommitLogLeastPages")
    )
    flush_commit_log_thorough_interval_ms: int = attrs.field(
        default=10_000, metadata=_key("flushCommitLogThoroughInterval")
    )
    flush_interval_consume_queue_ms: int = attrs.field(
        default=1000, metadata=_key("flushIntervalConsumeQueue")
    )
    sync_flush_timeout_ms: int = attrs.field(default=5000, metadata=_key("syncFlushTimeout"))
    file_reserved_time_hours: int = attrs.field(default=72, metadata=_key("fileReservedTime"))
    delete_when: str = attrs.field(default="04", metadata=_key("deleteWhen"))
    disk_max_used_space_ratio: int = attrs.field(default=75, metadata=_key("diskMaxUsedSpaceRatio"))
    disk_space_warning_level_ratio: float = attrs.field(
        default=0.90, metadata=_key("diskSpaceWarningLevelRatio")
    )
    disk_space_clean_forcibly_ratio: float = attrs.field(
        default=0.85, metadata=_key("diskSpaceCleanForciblyRatio")
    )
    clean_resource_interval_ms: int = attrs.field(
        default=10_000, metadata=_key("cleanResourceInterval")
    )
    max_message_size: int = attrs.field(default=4 * 1024 * 1024, metadata=_key("maxMessageSize"))
    check_crc_on_recover: bool = attrs.field(default=True, metadata=_key("checkCRCOnRecover"))
    message_index_safe: bool = attrs.field(default=False, metadata=_key("messageIndexSafe"))
    max_transfer_bytes_on_message_in_memory: int = attrs.field(
        default=256 * 1024, metadata=_key("maxTransferBytesOnMessageInMemory")
    )
    max_transfer_count_on_message_in_memory: int = attrs.field(
        default=32, metadata=_key("maxTransferCountOnMessageInMemory")
    )
    message_delay_level: str = attrs.field(
        default=DEFAULT_DELAY_LEVELS, metadata=_key("messageDelayLevel")
    )
    flush_threads: int = attrs.field(default=1, metadata=_key("rmqStoreFlushThreads"))

    @property
    def commit_log_dir(self) -> str:
        """Directory of the commit-log files."""
        return self.store_path_commit_log or os.path.join(self.store_path_root_dir, "commitlog")

    @property
    def sync_flush(self) -> bool:
        """True under SYNC_FLUSH."""
        return self.flush_disk_type == SYNC_FLUSH

    def delay_levels_ms(self) -> dict[int, int]:
        """Delay level (1-based) → delay in ms, parsed from ``message_delay_level``."""
        return parse_delay_levels(self.message_delay_level)


def parse_delay_levels(text: str) -> dict[int, int]:
    """Parse ``"1s 5s 10s ..."`` into ``{1: 1000, 2: 5000, ...}``; ValueError on a bad entry."""
    out: dict[int, int] = {}
    for i, item in enumerate(text.split(), start=1):
        mt = re.fullmatch(r"(\d+)([smhd])", item)
        if not mt:
            raise ValueError(f"bad delay level {item!r}")
        out[i] = int(mt.group(1)) * _UNITS_MS[mt.group(2)]
    return out
