"""Stage candidates for the planner: which runs of nodes can be one stage, split how, on how many
workers, with what work, bytes and weights per worker.

Positions are node indices: a candidate covers nodes ``[start, end)``. Serial candidates are
single nodes (the plan merges neighbours); spatial candidates are runs of whole spatial blocks
(one value enters, one leaves, every node tileable); output candidates are a conv/linear head
with its per-channel followers. ``burst`` describes; ``policies.planner`` chooses."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from burst.graph import Graph, dtype_bytes, node_inputs
from burst.node_work import node_works  # noqa: F401  (re-exported: burst.planning)
from burst.halo import choose_grid, hull, input_window, split_range
from burst.partition import _shape, blocks, output_head, per_channel, window_spec
from burst.packing import conv_weight_bytes, with_pack_bytes
from burst.plan import Split, Stage, StageChoice, build_stage, lead_split
from policies.planner import Candidate

# longest run of blocks one spatial stage may cover: halos grow with depth, and longer runs
# only pay when rounds are expensive; 12 blocks covers a whole ResNet stage and more
MAX_SPATIAL_BLOCKS = 12
# leg 0 runs on the master with no invocation or transfer, so a split whose legs are even waits
# on the remote leg: in plans of up to LEAD_MAX_WORKERS, candidates also give leg 0 this much
# more than an even share (of rows, or of output channels), and the planner weighs each from
# the profile. Wider plans have even legs only: the master's edge is shared by more legs there,
# and the variants tripled the cost search (VGG-16 in 512 MB x 8: 0.95 -> 3.0 s CPU).
LEAD_STEPS = (0.07, 0.15, 0.3, 0.45)
LEAD_MAX_WORKERS = 2


def lead_options(size: int, parts: int, workers: int = 2) -> list[int]:
    """The leads (units beyond an even first part) the candidates try for ``size`` units in
    ``parts`` in a plan of ``workers``: 0 and each of ``LEAD_STEPS`` of an even share,
    rounded, distinct."""
    if parts < 2 or workers > LEAD_MAX_WORKERS or size <= parts:
        return [0]
    even = -(-size // parts)
    most = size - (parts - 1)
    return sorted(
        {0} | {max(0, min(round(size / parts * (1 + f)), most) - even) for f in LEAD_STEPS}
    )


def _users(graph: Graph) -> dict[str, int]:
    users: dict[str, int] = {o: 1 for o in graph.outputs}
    for n in graph.nodes:
        for r in node_inputs(n):
            users[r] = users.get(r, 0) + 1
    return users


def head_chains(graph: Graph) -> list[list[str]]:
    """Every output-splittable head with its trailing per-channel ops (longest chain)."""
    users = _users(graph)
    names = [n.name for n in graph.nodes]
    chains = []
    for i, name in enumerate(names):
        if not output_head(graph, graph.node(name)):
            continue
        chain = [name]
        j = i
        while (
            j + 1 < len(names)
            and users.get(chain[-1], 0) == 1
            and chain[-1] not in graph.outputs
            and per_channel(graph, graph.node(names[j + 1]))
            and node_inputs(graph.node(names[j + 1])) == [chain[-1]]
        ):
            j += 1
            chain.append(names[j])
        chains.append(chain)
    return chains


def spatial_runs(graph: Graph) -> list[tuple[int, list]]:
    """(start position, [spatial blocks]) for each maximal run of consecutive spatial blocks."""
    pos = {n.name: i for i, n in enumerate(graph.nodes)}
    runs: list[tuple[int, list]] = []
    prev_end = None
    for b in blocks(graph):
        start = pos[b.nodes[0]]
        if b.kind == "spatial" and len(b.inputs) == 1:
            if runs and prev_end == start and runs[-1][1]:
                runs[-1][1].append(b)
            else:
                runs.append((start, [b]))
            prev_end = start + len(b.nodes)
        else:
            prev_end = None
    return runs


def _candidate(graph: Graph, choice: StageChoice, start: int, batch: int) -> Candidate:
    st = build_stage(graph, choice, 0, batch)
    c = replace(stage_candidate(st, start, start + len(choice.nodes)), lead=choice.lead)
    return with_pack_bytes(graph, st, c)


def stage_candidate(st: Stage, start: int = 0, end: int = 0) -> Candidate:
    """The planner's view of a built stage (leg 0 is the master's, the rest remote)."""
    remote = st.weight_bytes[1:] if st.split is not Split.SERIAL else st.weight_bytes
    return Candidate(
        start=start,
        end=end,
        split=st.split.value,
        workers=st.workers,
        nodes=tuple(st.nodes),
        macs=st.macs,
        leg_macs=tuple(st.leg_macs or [st.macs]),
        bytes_in=tuple(st.bytes_in),
        bytes_out=tuple(st.bytes_out),
        weight_bytes=max(remote or [0]),
        master_weight_bytes=st.weight_bytes[0],
        worker_weight_bytes=(
            st.weight_bytes[1] if len(st.weight_bytes) > 1 and st.split is not Split.SERIAL else 0
        ),
        transport=st.transport,
        packed=st.packed,
    )


def build_candidates(graph: Graph, workers: int, batch: int) -> list[Candidate]:
    """All stage candidates with up to ``workers`` workers per stage: every node serial, every
    head chain output-split 2..workers ways, every run of up to ``MAX_SPATIAL_BLOCKS`` spatial
    blocks tiled on each distinct grid of at most ``workers`` tiles."""
    pos = {n.name: i for i, n in enumerate(graph.nodes)}
    out = [
        _candidate(graph, StageChoice(Split.SERIAL, (n.name,)), i, batch)
        for i, n in enumerate(graph.nodes)
    ]
    for chain in head_chains(graph):
        head = graph.node(chain[0])
        channels = _channels(graph, chain)
        for k in range(2, workers + 1):  # one part is the master's own: that is serial
            for lead in lead_options(channels, k, workers):
                choice = StageChoice(
                    Split.OUTPUT, tuple(chain), k, node_inputs(head)[0], chain[-1], lead=lead
                )
                cand = _candidate(graph, choice, pos[chain[0]], batch)
                if cand.workers == k:  # fewer channels than k: the smaller k covers it
                    out.append(cand)
    if workers >= 2:
        for start, run in spatial_runs(graph):
            out.extend(_spatial_candidates(graph, run, start, workers, batch))
    return out


class _Windows:
    """Per-axis input windows, walked back from a block's output (rows and columns are
    independent, and a walk from one end serves every segment that ends there)."""

    def __init__(self, graph: Graph, names: list[str]):
        self.names = names
        # per node: (inputs, None for pointwise or per axis (k, s, p, d, input size))
        self.steps = []
        for name in names:
            spec = window_spec(graph, graph.node(name))
            srcs = node_inputs(graph.node(name))
            if spec["kind"] == "point":
                self.steps.append((srcs, None))
            else:
                hw = _shape(graph, srcs[0])[2:]
                self.steps.append(
                    (
                        srcs,
                        [
                            (spec["k"][a], spec["s"][a], spec["p"][a], spec["d"][a], hw[a])
                            for a in (0, 1)
                        ],
                    )
                )
        self._cache: dict = {}

    def walk(self, end: int, axis: int, rng: tuple[int, int]):
        """(window per value, window length per node) for output window ``rng`` of node
        ``end - 1`` along ``axis``."""
        key = (end, axis, rng)
        if key not in self._cache:
            need = {self.names[end - 1]: rng}
            for i in range(end - 1, -1, -1):
                r = need.get(self.names[i])
                if r is None:
                    continue
                srcs, win = self.steps[i]
                want = r if win is None else input_window(r, *win[axis])[0]
                for src in srcs:
                    old = need.get(src)
                    need[src] = want if old is None else hull(old, want)
            lengths = np.array([_len(need.get(n)) for n in self.names[:end]], dtype=float)
            self._cache[key] = (need, lengths)
        return self._cache[key]


def _spatial_candidates(
    graph: Graph, run: list, start: int, workers: int, batch: int
) -> list[Candidate]:
    names = [n for b in run for n in b.nodes]
    offsets = [0]
    for b in run:
        offsets.append(offsets[-1] + len(b.nodes))
    nodes = [graph.node(n) for n in names]
    macs_per_cell = np.array([n.macs / (n.shape[2] * n.shape[3]) for n in nodes])
    wbytes = np.concatenate([[0], np.cumsum([n.weight_bytes for n in nodes])])
    cbytes = np.concatenate([[0], np.cumsum([conv_weight_bytes(graph, [n]) for n in names])])
    macs = np.concatenate([[0], np.cumsum([n.macs for n in nodes])])
    in_cells = [_nbytes_per_cell(graph, b.inputs[0], batch) for b in run]
    walks = _Windows(graph, names)
    out: list[Candidate] = []
    for j, bj in enumerate(run):
        end = offsets[j + 1]
        oshape = graph.node(bj.output).shape
        grids = sorted({choose_grid(k, oshape[2], oshape[3]) for k in range(2, workers + 1)})
        layouts = [
            (gh, gw, lead)
            for gh, gw in grids
            if gh * gw >= 2
            for lead in (lead_options(oshape[2], gh, workers) if gw == 1 else [0])
        ]
        for gh, gw, lead in layouts:
            legs = []  # per tile: (cumulative leg macs, row need, col need, out area)
            for rows in lead_split(oshape[2], gh, lead):
                for cols in split_range(oshape[3], gw):
                    (rn, rl), (cn, cl) = walks.walk(end, 0, rows), walks.walk(end, 1, cols)
                    cum = np.concatenate([[0.0], np.cumsum(macs_per_cell[:end] * rl * cl)])
                    legs.append((cum, rn, cn, _len(rows) * _len(cols)))
            out_cell = _nbytes_per_cell(graph, bj.output, batch)
            for i in range(max(0, j + 1 - MAX_SPATIAL_BLOCKS), j + 1):
                src = run[i].inputs[0]
                s0 = offsets[i]
                in_cell = in_cells[i]
                seg = tuple(names[s0:end])
                out.append(
                    Candidate(
                        start=start + s0,
                        end=start + end,
                        split=Split.SPATIAL.value,
                        workers=len(legs),
                        nodes=seg,
                        macs=batch * int(macs[end] - macs[s0]),
                        leg_macs=tuple(int(batch * (c[end] - c[s0])) for c, _, _, _ in legs),
                        bytes_in=tuple(
                            in_cell * _len(rn[src]) * _len(cn[src]) for _, rn, cn, _ in legs
                        ),
                        bytes_out=tuple(out_cell * a for _, _, _, a in legs),
                        weight_bytes=int(wbytes[end] - wbytes[s0]),
                        master_weight_bytes=int(wbytes[end] - wbytes[s0]),
                        worker_weight_bytes=int(wbytes[end] - wbytes[s0]),
                        lead=lead,
                        master_pack_bytes=int(cbytes[end] - cbytes[s0]),  # every leg: all
                        worker_pack_bytes=int(cbytes[end] - cbytes[s0]),
                    )
                )
    return out


def _channels(graph: Graph, chain: list[str]) -> int:
    """Output channels (conv) or features (linear) an output split of ``chain`` divides."""
    shape = graph.node(chain[-1]).shape
    return shape[1] if graph.node(chain[0]).op != "aten.linear.default" else shape[-1]


def _len(r) -> int:
    return 0 if r is None else r[1] - r[0] + 1


def _nbytes_per_cell(graph: Graph, name: str, batch: int) -> int:
    """Bytes of one spatial position (all channels, the whole batch) of a 4-d value."""
    shape = _shape(graph, name)
    dtype = None if name in graph.inputs else graph.node(name).dtype
    return batch * shape[1] * dtype_bytes(dtype)


def choices_of(graph: Graph, picked: list[Candidate]) -> list[StageChoice]:
    """The stage choices for the candidates the planner picked (in order)."""
    out = []
    for c in picked:
        split = Split(c.split)
        if split is Split.SERIAL:
            out.append(StageChoice(split, c.nodes, packed=c.packed))
            continue
        first = graph.node(c.nodes[0])
        src = node_inputs(first)[0] if split is Split.OUTPUT else _spatial_input(graph, c.nodes)
        out.append(
            StageChoice(split, c.nodes, c.workers, src, c.nodes[-1], c.transport, c.lead, c.packed)
        )
    return out


def _spatial_input(graph: Graph, names: tuple[str, ...]) -> str:
    inside = set(names)
    ins = [r for n in names for r in node_inputs(graph.node(n)) if r not in inside]
    return ins[0]


def forced_choices(graph: Graph, split: str, workers: int) -> list[StageChoice]:
    """Every spatial run tiled ("spatial") and/or every head output-split: the forced modes."""
    if split == "none":
        return [StageChoice(Split.SERIAL, tuple(n.name for n in graph.nodes))]
    chains = {c[0]: c for c in head_chains(graph)}
    spatial = {}
    if split == "spatial":
        for _, run in spatial_runs(graph):
            # one stage per run of blocks with the same output map size
            group: list = []
            for b in run + [None]:
                if group and (
                    b is None
                    or graph.node(b.output).shape[2:] != graph.node(group[-1].output).shape[2:]
                ):
                    names = tuple(n for x in group for n in x.nodes)
                    spatial[names[0]] = StageChoice(
                        Split.SPATIAL, names, workers, group[0].inputs[0], group[-1].output
                    )
                    group = []
                if b is not None:
                    group.append(b)
    out: list[StageChoice] = []
    names = [n.name for n in graph.nodes]
    i = 0
    while i < len(names):
        if names[i] in spatial:
            out.append(spatial[names[i]])
            i += len(spatial[names[i]].nodes)
        elif names[i] in chains:
            chain = chains[names[i]]
            out.append(
                StageChoice(
                    Split.OUTPUT,
                    tuple(chain),
                    workers,
                    node_inputs(graph.node(chain[0]))[0],
                    chain[-1],
                )
            )
            i += len(chain)
        else:
            out.append(StageChoice(Split.SERIAL, (names[i],)))
            i += 1
    return out
