"""Users' weights: read a ``torch.save`` state_dict and load it strictly into a module."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from vmpool.artifact import ArtifactError


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """A state_dict saved with ``torch.save``; unwraps {"state_dict": ...} and DataParallel."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"weights file {path} not found") from None
    except Exception as exc:
        raise ArtifactError(
            f"cannot read weights {path}: not a torch.save state_dict ({type(exc).__name__})"
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ArtifactError(f"weights {path}: expected a state_dict (name -> tensor)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def apply_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` strictly; ArtifactError naming the first mismatched keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
    ):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{label} {len(keys)}: {', '.join(keys[:3])}{more}")
    if problems:
        raise ArtifactError(f"weights do not fit {what}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
