"""Every plan a brute force may try: each chain of candidate stages from layer position 0 to
``end``, where a stage starts where the one before it ended."""

from __future__ import annotations


def all_plans(cands, end) -> list[list]:
    by_start: dict[int, list] = {}
    for c in cands:
        by_start.setdefault(c.start, []).append(c)

    def walk(p):
        if p == end:
            yield []
            return
        for c in by_start.get(p, []):
            for rest in walk(c.end):
                yield [c] + rest

    return list(walk(0))
