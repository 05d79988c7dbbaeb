"""``tidegate tune --config FILE``: the file it writes is that serve config with the tuned policy
in place, not the policy alone.

The snippet alone (routing, ``[autoscaling]``, ``[vm] replicas``, tenants) was what `tune` wrote
whatever its ``--config`` held, and its help says to serve it as is: a config with
``[ledger] url = "postgresql://..."``, an ``admin_api_key``, a ``[vm]`` provisioner or a
``[burst]`` table then served with none of them (rows billed to a local SQLite file, the admin
API off, local VMs). ``[trace]`` and ``[simulate]`` (the simulator's tables, which serve refuses)
are left out. Tenant names are written as TOML reads them (the snippet's JSON escapes wrote an
emoji as a surrogate pair, which TOML refuses: the file did not load).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
from pathlib import Path

from gateway.tenants.config import hash_key

SIM_ONLY = ("trace", "simulate")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def serve_config(base_path: str | Path, snippet_text: str) -> str:
    """The serve config at ``base_path`` with the tuned keys of ``snippet_text`` in place."""
    base = tomllib.loads(Path(base_path).read_text())
    tuned = tomllib.loads(snippet_text)
    for table in SIM_ONLY:
        base.pop(table, None)
    base["routing_policy"] = tuned["routing_policy"]
    if "spill_outstanding_per_replica" in tuned:
        base["spill_outstanding_per_replica"] = tuned["spill_outstanding_per_replica"]
    base["autoscaling"] = tuned["autoscaling"]  # whole: another policy's keys do not carry over
    base.setdefault("vm", {})["replicas"] = tuned["vm"]["replicas"]
    for tenant in base.get("tenants", []):  # keys as hashes, as the snippet had them
        if isinstance(tenant, dict) and tenant.get("api_keys"):
            hashes = [hash_key(str(k)) for k in tenant.pop("api_keys")]
            tenant["api_key_hashes"] = [*tenant.get("api_key_hashes", []), *hashes]
    return dumps(base)


def dumps(doc: dict) -> str:
    """``doc`` as TOML that ``tomllib`` reads back equal (tables, arrays of tables, scalars)."""
    lines: list[str] = []
    _table(doc, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(doc: dict, path: list[str], lines: list[str]) -> None:
    nested = {k: v for k, v in doc.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in doc.items() if _is_table_array(v)}
    for key, value in doc.items():
        if key not in nested and key not in arrays:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested.items():
        lines += ["", f"[{'.'.join(_key(k) for k in [*path, key])}]"]
        _table(value, [*path, key], lines)
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{'.'.join(_key(k) for k in [*path, key])}]]"]
            _table(item, [*path, key], lines)


def _is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
