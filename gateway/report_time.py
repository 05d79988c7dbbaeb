"""A report window's ends as people write them: epoch seconds or ISO 8601 (CLI flags, query
parameters of ``GET /admin/reports/...``, ``tidegate ledger prune --before``)."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from .errors import BadRequest

_YEAR_5000 = 95_617_584_000.0  # epoch seconds of 5000-01-01
_QUERY_OFFSET = re.compile(r"^(.*\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?) (\d\d(?::?\d\d)?)$")


def parse_time(text: str | None) -> float | None:
    """Epoch seconds, or an ISO 8601 date/time (UTC unless it says otherwise). Eight digits are
    a basic-format date (``20261201``), not 1970's epoch seconds; a number past the year 5000
    is refused (epoch milliseconds, as Grafana and JavaScript write them)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise BadRequest(f"{text!r} is not a time")
        if not (len(text) == 8 and text.isdigit()):
            if value >= _YEAR_5000:
                raise BadRequest(
                    f"{text!r} is past the year 5000: epoch milliseconds? give seconds"
                )
            return value
    # "+01:00" in a URL's query arrives as " 01:00" (a + is a space there): the offset meant
    text = _QUERY_OFFSET.sub(r"\1+\2", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if text.isdigit():
            raise BadRequest(f"{text!r}: eight digits are a date (YYYYMMDD); not one") from None
        raise BadRequest(f"{text!r} is neither epoch seconds nor an ISO 8601 date/time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
