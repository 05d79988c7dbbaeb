"""numpy arrays <-> torch tensors for every datatype the protocol carries, BF16 included.

``torch.from_numpy`` and ``Tensor.numpy()`` know no bfloat16 (numpy has none of its own; the
codec holds BF16 as ml_dtypes' bfloat16), so a BF16 tensor crosses as its 16-bit pattern: a
uint16 view on one side, ``.view(torch.bfloat16)`` on the other. No copy and no float round
trip, so every bit (NaN payloads, signed zeros, subnormals) arrives as it was sent.
"""

from __future__ import annotations

import numpy as np
import torch

from vmpool.wire import BF16


def to_torch(array: np.ndarray) -> torch.Tensor:
    """``array`` as a tensor sharing its memory (``torch.from_numpy``), BF16 as bfloat16."""
    if array.dtype == BF16:
        return torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """``tensor`` (on the CPU) as an array sharing its memory, bfloat16 as BF16."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy().view(BF16)
    return tensor.numpy()
