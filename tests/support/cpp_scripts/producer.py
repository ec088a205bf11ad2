"""Send messages with the real C++ client and report each result as a JSON line.

Parameters (JSON file, argv[1]):
    namesrv, group, topic        where and as whom to send
    messages                     list of {body, keys?, tags?, props?, delay_level?, topic?,
                                 mode: "sync" | "oneway" | "orderly" | "oneway_orderly", arg?}
                                 or {mode: "batch", items: [messages]} (one send_batch call)
                                 (body: see cppcommon.body_from_spec; arg: orderly shard, an int;
                                 the default selector picks queue ``arg % queue_count``)
    timeout_ms                   send timeout (default 3000)
    max_message_size             client-side body limit (the C++ client's default is 128 KiB)
    compress_level               zlib level for bodies over 4 KiB (client default 5)
    log_level                    C++ client log level, 1 fatal … 6 trace (default: client's own)
    hold                         keep the producer started after the last send until stdin says stop
    retry_no_route               resend up to N times (0.2 s apart) after a "No route info" failure.
                                 The C++ client 1.0.1 also reports that when a sending thread
                                 cannot take its connection-table lock in time (its log says
                                 "GetTransport ... get timed_mutex timeout"), which happens on an
                                 overloaded machine; such a send never reached the broker.
Events: started, sent {i, status, msg_id, offset, rt_ms}, send_failed {i, error, rt_ms},
send_retry {i, error, rt_ms},
done {sent, failed, elapsed_ms}, stopped.
"""

from __future__ import annotations

import time
from typing import Any

import cppcommon  # type: ignore[import-not-found]  # sibling module (script dir)
from rocketmq.client import Message, Producer
from rocketmq.ffi import dll

NO_ROUTE = "No route info of this topic"


def build_message(topic: str, spec: dict[str, Any]) -> Message:
    """A C++ client message from its JSON description (binary-safe body)."""
    msg = Message(spec.get("topic", topic))
    body = cppcommon.body_from_spec(spec.get("body", ""))
    dll.SetByteMessageBody(msg._handle, body, len(body))
    if spec.get("keys") is not None:
        msg.set_keys(spec["keys"])
    if spec.get("tags") is not None:
        msg.set_tags(spec["tags"])
    for key, value in (spec.get("props") or {}).items():
        msg.set_property(key, value)
    if spec.get("delay_level"):
        msg.set_delay_time_level(int(spec["delay_level"]))
    return msg


def send_one(producer: Producer, topic: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Send with the requested API; returns the event fields of the result."""
    mode = spec.get("mode", "sync")
    if mode == "batch":
        batch = [build_message(topic, item) for item in spec["items"]]
        result = producer.send_batch(batch)
        return {"status": result.status.name, "msg_id": result.msg_id, "offset": result.offset}
    msg = build_message(topic, spec)
    if mode == "sync":
        result = producer.send_sync(msg)
    elif mode == "oneway":
        producer.send_oneway(msg)
        return {"status": "ONEWAY"}
    elif mode == "orderly":
        result = producer.send_orderly(msg, int(spec["arg"]))
    elif mode == "oneway_orderly":
        producer.send_oneway_orderly(msg, int(spec["arg"]))
        return {"status": "ONEWAY"}
    else:
        raise ValueError(f"unknown send mode {mode!r}")
    return {"status": result.status.name, "msg_id": result.msg_id, "offset": result.offset}


def main() -> None:
    """Start a producer, send every message in order, report, shut down."""
    params = cppcommon.load_params()
    producer = Producer(params["group"], timeout=int(params.get("timeout_ms", 3000)))
    cppcommon.configure_logging(dll, producer._handle, "Producer", params)
    producer.set_namesrv_addr(params["namesrv"])
    if params.get("max_message_size"):
        producer.set_max_message_size(int(params["max_message_size"]))
    if params.get("compress_level"):
        producer.set_compress_level(int(params["compress_level"]))
    producer.start()
    cppcommon.emit("started")
    sent = failed = 0
    begin = time.monotonic()
    retries = int(params.get("retry_no_route", 0))
    for i, spec in enumerate(params.get("messages", [])):
        for attempt in range(retries + 1):
            t0 = time.monotonic()
            try:
                fields = send_one(producer, params["topic"], spec)
            except Exception as e:  # noqa: BLE001 - every client error is reported, not raised
                error = f"{type(e).__name__}: {e}"
                rt_ms = (time.monotonic() - t0) * 1000
                if NO_ROUTE in error and attempt < retries:
                    # Nothing was written: the client failed before sending (see module doc).
                    cppcommon.emit("send_retry", i=i, error=error, rt_ms=rt_ms)
                    # A child process's backoff around a C++ client lock timeout, not test
                    # synchronization: the test itself waits on this script's events.
                    time.sleep(0.2)
                    continue
                failed += 1
                cppcommon.emit("send_failed", i=i, error=error, rt_ms=rt_ms)
                break
            sent += 1
            cppcommon.emit("sent", i=i, rt_ms=(time.monotonic() - t0) * 1000, **fields)
            break
    elapsed_ms = (time.monotonic() - begin) * 1000
    cppcommon.emit("done", sent=sent, failed=failed, elapsed_ms=elapsed_ms)
    if params.get("hold"):
        cppcommon.wait_for_stop()
    producer.shutdown()
    cppcommon.emit("stopped")


if __name__ == "__main__":
    main()
