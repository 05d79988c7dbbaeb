"""Plans the burst service could not make, kept with their error: a model whose graph, plan or
artifact the burst path refuses (``burst.exchange.refusal_kinds``) is not planned again (its
program loaded, its graph traced, the planner's search: seconds of CPU) at every request.

Kept per plan key, as the plans are: (model, workers, batch, split, the model files' stamp). A
new export, config or profile is a new stamp: the model is planned again, and its refusals from
the files before are dropped."""

from __future__ import annotations

import copy


class PlanRefusals:
    def __init__(self) -> None:
        self._errors: dict[tuple, BaseException] = {}

    def check(self, key: tuple) -> None:
        """Raise again the error the plan of ``key`` was refused with, if it was (a copy: the
        same type and message, a traceback of its own)."""
        model, stamp = key[0], key[-1]
        stale = [k for k in self._errors if k[0] == model and k[-1] != stamp]
        for old in stale:  # the model's files changed since: plan it again
            del self._errors[old]
        exc = self._errors.get(key)
        if exc is not None:
            raise copy.copy(exc)

    def remember(self, key: tuple, exc: BaseException) -> None:
        # a copy: the same type and message, without the traceback, whose frames hold what the
        # planning had loaded (the model's program and weights)
        self._errors[key] = copy.copy(exc)
