"""The rule mapping a trace's functions to models and tenants (``[trace]`` in a config file).

Azure traces name functions (``owner/app/function``, ``app/func``); ``[[trace.map]]`` rules,
first match wins, say which model and tenant each one's requests belong to.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

DEFAULT_MODEL = "resnet18"
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class MapRule:
    """Requests whose function key (``owner/app/function`` or ``app/func``) matches ``match``
    (a glob) belong to ``model`` and ``tenant``. The first matching rule wins."""

    match: str
    model: str | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class TraceMapping:
    default_model: str = DEFAULT_MODEL
    default_tenant: str = DEFAULT_TENANT
    rules: tuple[MapRule, ...] = ()
    fmt: str = "auto"  # [trace] format: when the command line does not force one
    seed: int | None = None  # [trace] seed: when the command line gives none

    def resolve(self, key: str) -> tuple[str, str]:
        for rule in self.rules:
            if fnmatch.fnmatchcase(key, rule.match):
                return rule.model or self.default_model, rule.tenant or self.default_tenant
        return self.default_model, self.default_tenant

    def unmatched(self, keys) -> list[str]:
        """A warning for each rule that matches none of ``keys`` (a typo, or a regular
        expression where a glob is read: every function then fell to the defaults, silently);
        a ``TraceError`` when no rule matches any (the mapping did nothing at all)."""
        keys = set(keys)
        idle = [
            (i, rule)
            for i, rule in enumerate(self.rules)
            if not any(fnmatch.fnmatchcase(k, rule.match) for k in keys)
        ]
        if idle and len(idle) == len(self.rules):  # every request at the defaults: a mistake
            from ops.traces import TraceError  # (ops.traces imports this module)

            shown = ", ".join(repr(rule.match) for _, rule in idle)
            raise TraceError(
                f"no [[trace.map]] rule matches a function of the trace ({shown}; globs over "
                f"owner/app/function or app/func, e.g. {sorted(keys)[0]!r}): every request "
                "would be the default model's and tenant's"
            )
        return [
            f"[[trace.map]] rule {i + 1} (match = {rule.match!r}) matches no function of the "
            "trace (a glob over owner/app/function or app/func)"
            for i, rule in idle
        ]

    @classmethod
    def from_config(cls, table: dict | None, model: str | None = None) -> "TraceMapping":
        """From the ``[trace]`` table of a config file: ``default_model``, ``default_tenant`` and
        ``[[trace.map]]`` rules with ``match``, ``model``, ``tenant``."""
        from ops.traces import FORMATS, TraceError  # (ops.traces imports this module)

        table = dict(table or {})
        unknown = set(table) - {"default_model", "default_tenant", "map", "format", "seed"}
        if unknown:
            raise TraceError(f"unknown [trace] keys: {', '.join(sorted(unknown))}")
        if not isinstance(table.get("map", []), list):  # (a TypeError traceback before)
            raise TraceError("[trace] map must be [[trace.map]] tables")
        rules = []
        for i, r in enumerate(table.get("map", [])):
            if not isinstance(r, dict) or "match" not in r or set(r) - {"match", "model", "tenant"}:
                raise TraceError(
                    f"[[trace.map]] rule {i + 1} needs 'match' and may have only "
                    "'model' and 'tenant'"
                )
            for key in r:  # (a number: a sort's TypeError traceback; a list: its repr matched)
                _name(r[key], f"[[trace.map]] rule {i + 1} {key}")
            rules.append(MapRule(r["match"], r.get("model"), r.get("tenant")))
        for key in ("default_model", "default_tenant"):
            if key in table:
                _name(table[key], f"[trace] {key}")
        fmt, seed = table.get("format", "auto"), table.get("seed")
        if fmt != "auto" and fmt not in FORMATS:
            raise TraceError(f"[trace] format {fmt!r}: one of {', '.join(FORMATS)}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise TraceError(f"[trace] seed {seed!r}: an integer >= 0")
        # the config's own default wins: --model then picks that model's requests; and where
        # rules name models, what no rule matches is the default model's, not --model's (a
        # --model chosen among the rules' models took every function the rules left out)
        named = any(rule.model for rule in rules)
        return cls(
            default_model=table.get("default_model") or (None if named else model) or DEFAULT_MODEL,
            default_tenant=table.get("default_tenant", DEFAULT_TENANT),
            rules=tuple(rules),
            fmt=fmt,
            seed=seed,
        )


def _name(value, where: str) -> None:
    from ops.traces import TraceError

    if not isinstance(value, str) or not value.strip():
        raise TraceError(f"{where} must be a non-empty string, got {value!r}")
