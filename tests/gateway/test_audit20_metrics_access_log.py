"""Audit 20: ``tidegate serve``'s access lines when stdout stops taking them.

A reader that stops reading (``tidegate serve | tee`` with tee stuck, a log driver that blocks)
left the writer thread in ``write`` while every request appended its line: memory grew without
bound (~150 bytes a request, ~0.5 GB an hour at 1000 requests/s). Now at most
``MAX_WAITING`` lines wait; later ones are counted, and the count is written once stdout takes
lines again.
"""

from __future__ import annotations

import threading

from gateway import access_log_stream
from gateway.access_log_stream import LineWriter


class StuckStream:
    """A stdout whose first write blocks until ``release``."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.text = ""
        self.changed = threading.Condition()

    def write(self, text: str) -> None:
        self.entered.set()
        assert self.release.wait(30)
        with self.changed:
            self.text += text
            self.changed.notify_all()

    def flush(self) -> None:
        pass

    def wait_for(self, needle: str) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: needle in self.text, timeout=30)


def test_lines_waiting_for_a_stuck_stdout_are_bounded_and_the_drop_is_said(monkeypatch):
    monkeypatch.setattr(access_log_stream, "MAX_WAITING", 1000)
    stream = StuckStream()
    writer = LineWriter(stream)
    for i in range(access_log_stream.BATCH):  # a full batch wakes the thread: it blocks
        writer(f"line {i}")
    assert stream.entered.wait(30)  # the thread holds what it took; the rest waits
    room = 1000 - len(writer._lines)
    for i in range(5000):
        writer(f"later {i}")
    assert len(writer._lines) == 1000 and writer.dropped == 5000 - room  # not all held
    stream.release.set()
    writer.flush()
    assert stream.wait_for(f"access log: {5000 - room} lines dropped, stdout did not keep up")
    assert stream.text.startswith("line 0\n") and f"later {room - 1}\n" in stream.text
    assert f"later {room}\n" not in stream.text
    writer("after")
    writer.flush()
    assert stream.wait_for("after\n")
    assert stream.text.count("dropped") == 1
