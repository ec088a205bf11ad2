"""Read every queue of a topic from offset 0 with the real C++ PullConsumer; one event per message.

Parameters (JSON file, argv[1]):
    namesrv, group, topic        what to read, as which consumer group
    expression                   tag expression (default "*")
    max_num                      messages per pull (default 32)
    read_props                   extra property names to read from each message
Events: started, queues {queues: [{broker, queue_id}]}, received {... as push_consumer, plus
queue_id, queue_offset}, pulled {queue_id, status, next_offset, min_offset, max_offset} per pull,
done {count}, stopped. Each queue is read until the broker answers NO_NEW_MSG.
"""

from __future__ import annotations

import ctypes
from typing import Any

import cppcommon  # type: ignore[import-not-found]  # sibling module (script dir)
import push_consumer  # type: ignore[import-not-found]  # sibling module (script dir)
from rocketmq.client import PullConsumer, RecvMessage
from rocketmq.ffi import _CMessageQueue, _CPullStatus, dll

#: Pulls of one queue before giving up (a broker that never says NO_NEW_MSG).
MAX_PULLS_PER_QUEUE = 10_000


def main() -> None:
    """Start, read each queue to its end, report, shut down."""
    params = cppcommon.load_params()
    consumer = PullConsumer(params["group"])
    consumer.set_namesrv_addr(params["namesrv"])
    consumer.start()
    cppcommon.emit("started")
    read_props = list(params.get("read_props", []))
    expression = params.get("expression", "*").encode()
    max_num = int(params.get("max_num", 32))
    queues = ctypes.POINTER(_CMessageQueue)()
    size = ctypes.c_int()
    dll.FetchSubscriptionMessageQueues(
        consumer._handle, params["topic"].encode(), ctypes.pointer(queues), ctypes.pointer(size)
    )
    mqs = [queues[i] for i in range(size.value)]
    cppcommon.emit(
        "queues",
        queues=[{"broker": mq.brokerName.decode(), "queue_id": mq.queueId} for mq in mqs],
    )
    count = 0
    for mq in sorted(mqs, key=lambda q: q.queueId):
        offset = 0
        for _ in range(MAX_PULLS_PER_QUEUE):
            result: Any = dll.Pull(
                consumer._handle, ctypes.pointer(mq), expression, offset, max_num
            )
            status = _CPullStatus(result.pullStatus)
            cppcommon.emit(
                "pulled",
                queue_id=mq.queueId,
                status=status.name,
                next_offset=result.nextBeginOffset,
                min_offset=result.minOffset,
                max_offset=result.maxOffset,
                size=result.size,
            )
            if status == _CPullStatus.FOUND:
                for i in range(result.size):
                    fields = push_consumer.describe(RecvMessage(result.msgFoundList[i]), read_props)
                    cppcommon.emit("received", **fields)
                    count += 1
            if status != _CPullStatus.BROKER_TIMEOUT:
                offset = result.nextBeginOffset
            dll.ReleasePullResult(result)
            if status in (_CPullStatus.NO_NEW_MSG, _CPullStatus.OFFSET_ILLEGAL):
                break
    dll.ReleaseSubscriptionMessageQueue(queues)
    cppcommon.emit("done", count=count)
    consumer.shutdown()
    cppcommon.emit("stopped")


if __name__ == "__main__":
    main()
