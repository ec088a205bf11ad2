"""A stand-in for the C++ scripts, used to test the harness itself (no RocketMQ involved).

Parameters: ``events`` (list of event dicts to print at start), ``noise`` (a non-JSON line to
print first), ``report_env`` (emit an "env" event with HOME, cwd, pid), ``stderr`` (text written
to stderr), ``then``: "exit" (default, exit code ``code``), "wait" (until stdin says stop, then
exit 0) or "hang" (ignore stdin and SIGTERM, sleep).
"""

from __future__ import annotations

import os
import signal
import sys

import cppcommon  # type: ignore[import-not-found]  # sibling module (script dir)


def main() -> None:
    """Print the requested events, then exit, wait for stop or hang."""
    params = cppcommon.load_params()
    if params.get("noise"):
        print(params["noise"], flush=True)
    if params.get("stderr"):
        sys.stderr.write(params["stderr"])
        sys.stderr.flush()
    if params.get("report_env"):
        cppcommon.emit("env", home=os.environ.get("HOME"), cwd=os.getcwd(), pid=os.getpid())
    for event in params.get("events", []):
        cppcommon.emit(**event)
    then = params.get("then", "exit")
    if then == "wait":
        cppcommon.wait_for_stop()
        cppcommon.emit("stopped")
    elif then == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cppcommon.emit("hanging")
        while True:
            signal.pause()  # only SIGKILL ends it: what the harness must cope with
    sys.exit(int(params.get("code", 0)))


if __name__ == "__main__":
    main()
