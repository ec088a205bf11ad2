"""Consume with the real C++ PushConsumer and report every delivery as a JSON line.

Parameters (JSON file, argv[1]):
    namesrv, group, topic        what to subscribe to, as which consumer group
    expression                   tag expression (default "*")
    orderly                      register an orderly listener (default false: concurrent)
    model                        "CLUSTERING" (default) or "BROADCASTING"
    thread_count, batch_max, instance_name, log_level   C++ client settings, when given
    read_props                   extra property names to read from each message
    reconsume_later              {"keys": [...], "times": n}: answer RECONSUME_LATER to the first n
                                 deliveries of each message whose keys are listed
Events: started, received {topic, tags, keys, msg_id, queue_id, queue_offset, reconsume_times,
delay_level, store_ts, born_ts, recv_ms, props, body_len, body_sha256, body_b64?, result},
stopped. Stops (shutting the consumer down, which commits offsets) on stdin ``{"cmd": "stop"}``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cppcommon  # type: ignore[import-not-found]  # sibling module (script dir)
from rocketmq.client import PushConsumer, RecvMessage
from rocketmq.ffi import MSG_CALLBACK_FUNC, MessageModel, dll

#: Properties every received event carries (absent ones are reported as None).
STANDARD_PROPS = (
    "UNIQ_KEY",
    "KEYS",
    "TAGS",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "ORIGIN_MESSAGE_ID",
    "RECONSUME_TIME",
    "MAX_RECONSUME_TIMES",
)

CONSUME_SUCCESS = 0
RECONSUME_LATER = 1


def describe(msg: RecvMessage, read_props: list[str]) -> dict[str, Any]:
    """Every field of a received message, as event fields."""
    props = {}
    for name in (*STANDARD_PROPS, *read_props):
        value = cppcommon.text(msg.get_property(name))
        props[name] = value if value else None
    body = msg.body or b""
    return {
        "topic": cppcommon.text(msg.topic),
        "tags": cppcommon.text(msg.tags),
        "keys": cppcommon.text(msg.keys),
        "msg_id": cppcommon.text(msg.id),
        "queue_id": msg.queue_id,
        "queue_offset": msg.queue_offset,
        "reconsume_times": msg.reconsume_times,
        "delay_level": msg.delay_time_level,
        "store_ts": msg.store_timestamp,
        "born_ts": msg.born_timestamp,
        "store_size": msg.store_size,
        "commit_log_offset": msg.commit_log_offset,
        "recv_ms": time.time() * 1000,
        "thread": threading.get_ident(),
        "props": props,
        **cppcommon.body_fields(body),
    }


def main() -> None:
    """Start a consumer, report deliveries until told to stop, shut down cleanly."""
    params = cppcommon.load_params()
    orderly = bool(params.get("orderly", False))
    model = MessageModel[params.get("model", "CLUSTERING")]
    consumer = PushConsumer(params["group"], orderly=orderly, message_model=model)
    cppcommon.configure_logging(dll, consumer._handle, "PushConsumer", params)
    consumer.set_namesrv_addr(params["namesrv"])
    if params.get("thread_count"):
        consumer.set_thread_count(int(params["thread_count"]))
    if params.get("batch_max"):
        consumer.set_message_batch_max_size(int(params["batch_max"]))
    if params.get("instance_name"):
        consumer.set_instance_name(params["instance_name"])
    read_props = list(params.get("read_props", []))
    later = params.get("reconsume_later") or {}
    later_keys = set(later.get("keys", []))
    later_times = int(later.get("times", 1))
    failures: dict[str, int] = {}
    lock = threading.Lock()

    def on_message(_consumer: int, handle: int) -> int:
        try:
            fields = describe(RecvMessage(handle), read_props)
            result = CONSUME_SUCCESS
            if fields["keys"] in later_keys:
                with lock:
                    seen = failures.get(fields["keys"], 0)
                    if seen < later_times:
                        failures[fields["keys"]] = seen + 1
                        result = RECONSUME_LATER
            fields["result"] = "RECONSUME_LATER" if result else "CONSUME_SUCCESS"
            cppcommon.emit("received", **fields)
            return result
        except Exception as e:  # noqa: BLE001 - a crash here would be swallowed by ctypes
            cppcommon.emit("callback_error", error=f"{type(e).__name__}: {e}")
            return RECONSUME_LATER

    callback = MSG_CALLBACK_FUNC(on_message)
    dll.Subscribe(
        consumer._handle, params["topic"].encode(), params.get("expression", "*").encode()
    )
    register = dll.RegisterMessageCallbackOrderly if orderly else dll.RegisterMessageCallback
    register(consumer._handle, callback)
    consumer.start()
    cppcommon.emit("started")
    cppcommon.wait_for_stop()
    consumer.shutdown()
    cppcommon.emit("stopped")


if __name__ == "__main__":
    main()
