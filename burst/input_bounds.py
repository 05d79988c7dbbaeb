"""The request's values a plan can run: token ids within the embedding tables they index.

An id past its table failed inside the master ("IndexError: index out of range in self", a 503
after a paid invocation, read as "retry"); the model server refuses it with a 400
(``vmpool.program_specs.input_ranges``), and so does the burst path now, before any invocation.
"""

from __future__ import annotations

import numpy as np

from burst.exchange import BurstUnavailable
from burst.graph import Graph


def embedding_rows(graph: Graph) -> dict[str, int]:
    """Graph inputs read directly as an ``aten.embedding``'s indices: the fewest rows of the
    tables they index."""
    rows: dict[str, int] = {}
    for node in graph.nodes:
        if node.op != "aten.embedding.default" or len(node.args) < 2:
            continue
        table, ids = node.args[0], node.args[1]
        if not (isinstance(table, dict) and "w" in table and isinstance(ids, dict)):
            continue
        name = ids.get("ref")
        shape = graph.weights.get(table["w"], {}).get("shape")
        if name in graph.inputs and shape:
            rows[name] = min(rows.get(name, shape[0]), shape[0])
    return rows


def check_ids(graph: Graph, names: list[str], inputs: dict[str, np.ndarray], model: str) -> None:
    """``BurstUnavailable(bad_input=True)`` naming the input if an id is outside its table;
    ``names``: the config's input names, in ``graph.inputs`` order."""
    rows = embedding_rows(graph)
    for graph_name, name in zip(graph.inputs, names, strict=False):
        array = inputs.get(name)
        if graph_name not in rows or array is None or not array.size:
            continue
        hi = rows[graph_name] - 1
        if not 0 <= array.min() <= array.max() <= hi:
            bad = array.min() if array.min() < 0 else array.max()
            raise BurstUnavailable(
                f"input {name!r}: value {bad} is outside 0..{hi}, the rows of the table model "
                f"{model} looks it up in",
                bad_input=True,
            )
