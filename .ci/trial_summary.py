"""Turn trial's closing summary into the plain 'N passed, N failed' line CI reads.

Reads the trial log given as argv[1]; exits with trial's own status (argv[2]).
"""

import re
import sys


def main() -> int:
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
    status = int(sys.argv[2])
    counts = {}
    for line in reversed(text.splitlines()):
        match = re.match(r"^(PASSED|FAILED) \((.*)\)\s*$", line.strip())
        if match:
            for part in match.group(2).split(","):
                key, _, value = part.strip().partition("=")
                if value.isdigit():
                    counts[key] = int(value)
            break
    passed = counts.get("successes", 0)
    failed = counts.get("failures", 0) + counts.get("errors", 0)
    failed += counts.get("unexpectedSuccesses", 0)
    if not counts and status != 0:
        failed = 1
    skipped = counts.get("skips", 0) + counts.get("expectedFailures", 0)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return status


if __name__ == "__main__":
    sys.exit(main())
