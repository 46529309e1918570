"""Enqueue work from a separate process, as application code would; prints one JSON line.

    python -m bench.enqueue pipeline N VIDEO_URL   # N x submit_lipsync
    python -m bench.enqueue bare N                 # N x the no-op chain of bench.noop_app

Settings (REDIS_URL...) come from the environment. Prints the ids (job ids, or the final
task ids of the bare chains) and the wall time of the enqueueing.
"""

from __future__ import annotations

import json
import sys
import time

AUDIO_URL = "https://videos.example.com/voice.wav"


def main(argv: list[str]) -> None:
    kind, count = argv[0], int(argv[1])
    started = time.time()
    ids: list[str] = []
    if kind == "pipeline":
        from worker import submit_lipsync

        ids = [submit_lipsync(argv[2], AUDIO_URL) for _ in range(count)]
    elif kind == "bare":
        from bench.noop_app import signature

        ids = [signature(f"bare-{i}").apply_async().id for i in range(count)]
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    print(json.dumps({"started": started, "ended": time.time(), "ids": ids}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
