"""A plan's typed form and its JSON: ``Plan`` and its ``Stage``s, versioned and content-hashed.

What the gateway, the functions and ``tidegate plan`` exchange; ``burst.plan`` builds plans.
A plan read back must hash to its ``plan_id``, so an edited or corrupted plan is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum

PLAN_VERSION = 1
# how tensors travel between master and workers: inline in the invocation payload, through the
# object store, through the queue (SQS; a deployment without one sends them through its store),
# auto (inline under ``inline_limit_bytes``, else the deployment's store or queue), or chosen per
# stage by the planner (``per-stage``: each split stage says which, ``Stage.transport``)
TRANSPORTS = ("auto", "inline", "store", "queue", "per-stage")
STAGE_TRANSPORTS = ("auto", "inline", "store", "queue")
DEFAULT_INLINE_LIMIT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit


class PlanError(Exception):
    """A plan is malformed or cannot be made."""


class Split(str, Enum):
    """Where a stage runs: tiles of the output map, slices of output channels, or the master."""

    SPATIAL = "spatial"
    OUTPUT = "output"
    SERIAL = "serial"


def function_names(memory_mb: int, master_memory_mb: int | None = None) -> tuple[str, str]:
    """(master, worker) function names for a memory size, as the README documents them."""
    return (
        f"tidegate-master-{int(master_memory_mb or memory_mb)}mb",
        f"tidegate-worker-{int(memory_mb)}mb",
    )


@dataclass
class Tile:
    """One worker's share of a spatial stage: its output window and the input window it reads,
    each ``[[row0, row1], [col0, col1]]`` inclusive, in global coordinates."""

    out: list[list[int]]
    window: list[list[int]]


@dataclass
class Stage:
    index: int
    split: Split
    nodes: list[str]
    macs: int  # whole stage, at the plan's batch
    workers: int  # 0 for a serial stage
    weight_bytes: list[int]  # per worker (serial: [the master's])
    bytes_in: list[int]  # per worker
    bytes_out: list[int]
    leg_macs: list[int] = field(default_factory=list)  # per worker, halo recompute included
    input: str | None = None
    output: str | None = None
    grid: list[int] | None = None  # spatial: [rows, cols] of tiles
    tiles: list[Tile] = field(default_factory=list)
    parts: list[list[int]] = field(default_factory=list)  # output: channel ranges per worker
    cat_dim: int | None = None
    sliced_weights: list[str] = field(default_factory=list)
    transport: str | None = None  # this stage's (split stages): None takes the plan's
    # its convs run on packed weights (``burst.packed_conv``); the planner leaves a stage plain
    # where the function lacks room for the copies (``policies.packing``)
    packed: bool = True

    def to_json(self) -> dict:
        """The stage as plain JSON data (only the fields its split uses)."""
        d = {
            "index": self.index,
            "split": self.split.value,
            "nodes": list(self.nodes),
            "macs": self.macs,
            "workers": self.workers,
            "weight_bytes": list(self.weight_bytes),
            "bytes_in": list(self.bytes_in),
            "bytes_out": list(self.bytes_out),
            "leg_macs": list(self.leg_macs),
        }
        if not self.packed:  # absent when packed: older plans keep their hash
            d["packed"] = False
        if self.split is Split.SERIAL:
            return d
        d.update(input=self.input, output=self.output)
        if self.transport is not None:  # absent otherwise: older plans keep their hash
            d["transport"] = self.transport
        if self.split is Split.SPATIAL:
            d.update(
                grid=list(self.grid), tiles=[{"out": t.out, "in": t.window} for t in self.tiles]
            )
        else:
            d.update(
                parts=[list(p) for p in self.parts],
                cat_dim=self.cat_dim,
                sliced_weights=list(self.sliced_weights),
            )
        return d

    @classmethod
    def from_json(cls, raw, position: int = 0) -> "Stage":
        where = f"stage {position}"
        if not isinstance(raw, dict) or raw.get("split") not in {s.value for s in Split}:
            raise PlanError(f"{where}: split must be spatial, output or serial")
        if not isinstance(raw.get("nodes"), list) or not raw["nodes"]:
            raise PlanError(f"{where}: needs a non-empty node list")
        split = Split(raw["split"])
        try:
            st = cls(
                index=int(raw["index"]),
                split=split,
                nodes=[str(n) for n in raw["nodes"]],
                macs=int(raw["macs"]),
                workers=int(raw["workers"]),
                weight_bytes=[int(b) for b in raw["weight_bytes"]],
                bytes_in=[int(b) for b in raw["bytes_in"]],
                bytes_out=[int(b) for b in raw["bytes_out"]],
                leg_macs=[int(m) for m in raw.get("leg_macs", [])],
                input=raw.get("input"),
                output=raw.get("output"),
                grid=raw.get("grid"),
                tiles=[Tile(out=t["out"], window=t["in"]) for t in raw.get("tiles", [])],
                parts=[list(p) for p in raw.get("parts", [])],
                cat_dim=raw.get("cat_dim"),
                sliced_weights=list(raw.get("sliced_weights", [])),
                transport=raw.get("transport"),
                packed=bool(raw.get("packed", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"{where}: malformed ({exc!r})") from exc
        if st.transport is not None and st.transport not in STAGE_TRANSPORTS:
            raise PlanError(f"{where}: transport must be one of {STAGE_TRANSPORTS}")
        if split is Split.SPATIAL and len(st.tiles) != st.workers:
            raise PlanError(f"{where}: one tile per worker expected")
        if split is Split.OUTPUT and len(st.parts) != st.workers:
            raise PlanError(f"{where}: one part per worker expected")
        if split is not Split.SERIAL and not (st.input and st.output and st.workers >= 1):
            raise PlanError(f"{where}: a split stage needs input, output and workers")
        return st


@dataclass
class Plan:
    model: str
    batch: int
    workers: int
    split: str
    memory_mb: int
    transport: str
    inputs: list[str]  # the model's tensor names (its config), in program order
    input_shapes: list[list[int]]
    outputs: list[str]
    stages: list[Stage]
    inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES
    master_function: str = "tidegate-master-1024mb"
    worker_function: str = "tidegate-worker-1024mb"  # worker j runs "{worker_function}-{j}"
    plan_id: str = ""
    plan_version: int = PLAN_VERSION
    totals: dict = field(default_factory=dict)
    weights_digest: str = ""  # the model's weights (``Graph.weights_digest``): in the plan_id

    def content(self) -> dict:
        d = {
            k: getattr(self, k)
            for k in (
                "plan_version",
                "model",
                "batch",
                "workers",
                "split",
                "memory_mb",
                "transport",
                "inline_limit_bytes",
                "master_function",
                "worker_function",
                "inputs",
                "input_shapes",
                "outputs",
                "totals",
                "weights_digest",
            )
        }
        d["stages"] = [s.to_json() for s in self.stages]
        return d

    def to_dict(self) -> dict:
        return {"plan_id": self.plan_id, **self.content()}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Plan":
        try:
            raw = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw) -> "Plan":
        """A plan from JSON data; keys it does not know (e.g. predictions) are ignored."""
        if not isinstance(raw, dict):
            raise PlanError("plan must be a JSON object")
        version = raw.get("plan_version")
        if version != PLAN_VERSION:
            raise PlanError(
                f"unsupported plan_version {version!r} (this build reads {PLAN_VERSION})"
            )
        try:
            fields = {
                k: raw[k]
                for k in (
                    "model",
                    "batch",
                    "workers",
                    "split",
                    "memory_mb",
                    "transport",
                    "inputs",
                    "input_shapes",
                    "outputs",
                    "stages",
                    "inline_limit_bytes",
                    "master_function",
                    "worker_function",
                    "plan_id",
                    "totals",
                )
            }
        except KeyError as exc:
            raise PlanError(f"plan is missing field {exc.args[0]!r}") from exc
        fields["weights_digest"] = raw.get("weights_digest", "")
        if not isinstance(fields["stages"], list) or not fields["stages"]:
            raise PlanError("plan has no stages")
        fields["stages"] = [Stage.from_json(s, i) for i, s in enumerate(fields["stages"])]
        try:
            plan = cls(**fields)
        except TypeError as exc:
            raise PlanError(f"malformed plan: {exc}") from exc
        if plan.transport not in TRANSPORTS:
            raise PlanError(f"transport must be one of {TRANSPORTS}")
        if plan.plan_id != content_hash(plan.content()):
            raise PlanError("plan_id does not match the plan's content (edited or corrupted)")
        return plan


def stage_transport(plan: Plan, stage: Stage) -> str:
    """How ``stage``'s tensors travel: its own transport, else the plan's (a per-stage plan's
    stage without one: auto)."""
    if stage.transport is not None:
        return stage.transport
    return "auto" if plan.transport == "per-stage" else plan.transport


def worker_function_name(plan: Plan, worker: int) -> str:
    """Worker ``j`` always runs in its own function, so its instances keep the weight slices of
    worker ``j`` of every stage warm (as Gillis deploys one function per partition); one generic
    worker function would hand slices to random instances and reload them."""
    return f"{plan.worker_function}-{worker}"


def held_functions(stages: list[Stage]) -> int:
    """The functions a request of these stages holds: its widest stage's, 1 where none splits
    (not the cap asked for: 16 asked of a model whose widest split is 8 held 16 instances)."""
    return max([1] + [s.workers for s in stages if s.split is not Split.SERIAL])


def content_hash(content: dict) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
