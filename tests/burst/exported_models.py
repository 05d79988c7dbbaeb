"""A test model library's models, each exported once per test process with a dynamic batch
from a batch of 2 (``byo_models``, ``audit20_models``, ``audit21_models``: each has ``build``,
``example`` and ``export``), with their graph and weights, for the split tests."""

from __future__ import annotations

from burst.graph import build_graph, program_weights

BUILT: dict[tuple[str, str], tuple] = {}


def exported(lib, name: str) -> tuple:
    """(module, program, graph, weights) of ``lib``'s model ``name``."""
    key = (lib.__name__, name)
    if key not in BUILT:
        module = lib.build(name)
        program = lib.export(module, lib.example(name))
        BUILT[key] = (module, program, build_graph(program, name), program_weights(program))
    return BUILT[key]
