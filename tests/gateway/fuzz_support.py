"""What the fuzz tests share (test_fuzz_grpc.py, test_fuzz_admin.py, test_fuzz_async.py): their
hypothesis settings, hostile JSON, and a log handler that records failures.

Deterministic by default: a fixed set of examples each run, the same in CI and on a laptop.
``FUZZ_EXAMPLES=2000`` runs that many fresh random examples per test instead (and shrinks a
failure to its smallest form).
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

RUN_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples: int) -> settings:
    """``examples`` per run (or FUZZ_EXAMPLES), derandomized unless FUZZ_EXAMPLES is set."""
    return settings(
        max_examples=RUN_EXAMPLES or examples,
        deadline=None,
        database=None,
        derandomize=not RUN_EXAMPLES,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if RUN_EXAMPLES else [])],
    )


class LoggedFailures(logging.Handler):
    """Records what the gateway logs as a failure (an exception, or ERROR): none may appear."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)

    def assert_none(self) -> None:
        logged = [r.getMessage() for r in self.records]
        self.records.clear()
        assert not logged, logged


@contextmanager
def logged_failures():
    handler = LoggedFailures()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


# numbers a hostile client sends: past 64 bits, past 2**53, NaN and infinities (json.dumps
# writes them as JSON never has them), negative zero, tiny and huge floats
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**53, 2**53 - 1, 2**63, 2**64, 10**40, -(10**40)]),
    st.floats(),
    st.sampled_from([0.5, 1e-300, 1e300, -0.0, 0.999999, 1.000001]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def dumps(value) -> bytes:
    """JSON as Python writes it: NaN, Infinity and integers of any size included."""
    return json.dumps(value).encode()
