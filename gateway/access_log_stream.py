"""``tidegate serve``'s access lines on stdout, written in batches off the request path.

Through ``logging`` a line cost about 10-14 us (a record, handler locks, a write and flush per
line); here a request appends its line to a list under a lock (about 1 us) and a thread writes
what gathered every ``FLUSH_S`` or once ``BATCH`` lines wait, and at exit. Health probes and
/metrics scrapes are left out (a kubelet probes every few seconds; serve polls its own
readiness while it starts): ``skip``, a pattern of paths AccessLog checks before it formats.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time

FLUSH_S = 0.2
BATCH = 512
MAX_WAITING = 100_000  # lines held while stdout does not take them (~15 MB); past it, dropped


class LineWriter:
    """A sink for ``AccessLog``: ``writer(line)`` queues it; ``flush()`` writes the queue."""

    def __init__(self, stream=None, *, timestamps: bool = False, skip=None):
        self.stream = stream or sys.stdout
        self.timestamps = timestamps  # text lines start with the UTC second
        self.skip = skip  # a compiled pattern of paths left out (AccessLog checks it)
        self._lines: list[str] = []
        self.dropped = 0  # lines let go while the stream did not keep up (said once it does)
        self._lock = threading.Lock()  # the request path's: never held across a write
        self._writing = threading.Lock()
        self._stamp = (0, "")
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="access-log", daemon=True).start()
        atexit.register(self.flush)

    def __call__(self, line: str) -> None:
        if self.timestamps:
            line = self._now() + line
        with self._lock:
            if len(self._lines) >= MAX_WAITING:  # stdout blocked (a reader that stopped
                self.dropped += 1  # reading): memory held stays bounded, requests go on
                return
            self._lines.append(line)
            full = len(self._lines) >= BATCH
        if full:
            self._wake.set()

    def _now(self) -> str:
        second = int(time.time())
        if self._stamp[0] != second:
            self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S ", time.gmtime(second)))
        return self._stamp[1]

    def flush(self) -> None:
        with self._writing:  # batches go out in the order they were taken (the thread, exit)
            with self._lock:
                lines, self._lines = self._lines, []
                if self.dropped and lines:
                    lines.append(
                        f"access log: {self.dropped} lines dropped, stdout did not keep up"
                    )
                    self.dropped = 0
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # a closed stdout (the reader went away): drop
                    pass

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            self.flush()
