#!/usr/bin/env python3
"""Breaks manifest-written -> ready into forkletd's own steps.

    spans.py LOG ROUNDS

LOG: forkletd's log, `--log-format json` at debug level.
ROUNDS: one line per round, `MODULE WRITTEN_US SEEN_US` (the bench's clock,
microseconds since the epoch, when the manifest was written and when the
bench saw `ready`).

Prints `KEY MS` lines, the (lower) median over the rounds of each step:
file event, parsed (desired state published), container created, started,
healthy, installed (POST /install answered), committed (`ready` stored),
seen (by the bench's poll).
"""

import json
import statistics
import sys
from datetime import datetime

# Each step: its key and how its log line is recognised. The module's own
# lines carry `module`; the watcher's lines are about the whole directory.
STEPS = [
    ("file_event", None, "manifests changed"),
    ("parsed", None, "desired state published"),
    ("created", "module", "runner created"),
    ("started", "module", "runner started"),
    ("healthy", "module", "runner healthy"),
    ("installed", "module", "POST /install answered"),
    ("committed", "module", "POST /install succeeded"),
]


def micros(stamp):
    # RFC 3339 with up to nanoseconds; Python reads microseconds.
    head, _, frac = stamp.rstrip("Z").partition(".")
    at = datetime.fromisoformat(head + "+00:00")
    return int(at.timestamp()) * 1_000_000 + int((frac + "000000")[:6])


def main(log_path, rounds_path):
    lines = []
    with open(log_path, encoding="utf-8", errors="replace") as log:
        for raw in log:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            lines.append((micros(line["timestamp"]), line.get("message", ""), line.get("module")))
    spans = {key: [] for key, _, _ in STEPS}
    spans["seen"] = []
    for raw in open(rounds_path, encoding="utf-8"):
        module, written, seen = raw.split()
        before, at = int(written), int(written)
        for key, scope, message in STEPS:
            # The first such line at or after the previous step's.
            found = next(
                (
                    t
                    for t, m, mod in lines
                    if t >= at and m == message and (scope is None or mod == "default/" + module)
                ),
                None,
            )
            if found is None:
                break
            spans[key].append((found - before) / 1000)
            before = at = found
        else:
            spans["seen"].append((int(seen) - before) / 1000)
    for key, values in spans.items():
        if values:
            print(key, round(statistics.median_low(values), 1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
