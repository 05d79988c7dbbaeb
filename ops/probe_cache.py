"""Exported probe programs kept between `tidegate profile` runs.

Exporting the compute fit's 58 probe layers (``ops.perfgen_fit``) takes ~15 s of a core, most of
it the recurrent ones; loading them back takes ~1.4 s. A program is kept under
``$TIDEGATE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/tidegate`` or ``~/.cache/tidegate``), in
``probes/``, named by the probe and a hash of what makes it: torch's version, the probes' source,
the module and its input's shape. A file that cannot be read is exported again and replaced; a
cache that cannot be written is skipped (the run exports, as without a cache)."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger("tidegate.profile")


def cache_dir() -> Path:
    root = os.environ.get("TIDEGATE_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tidegate"


def _path(name: str, module, x, source: str) -> Path:
    import torch

    key = "\n".join(
        (torch.__version__, source, repr(module), str(tuple(x.shape)), str(x.dtype))
    ).encode()
    return cache_dir() / "probes" / f"{name}-{hashlib.sha256(key).hexdigest()[:16]}.pt2"


def exported(name: str, module, x, source_of=None):
    """``torch.export.export(module, (x,))``, or the same program kept by an earlier run.
    ``source_of`` is the module (or function) whose source defines the probes: part of the key,
    so a changed probe is exported again."""
    import torch

    source = inspect.getsource(source_of) if source_of is not None else ""
    path = _path(name, module, x, source)
    if path.is_file():
        try:
            return torch.export.load(path)
        except Exception as exc:  # a damaged or foreign file: export again, replace it
            log.warning("probe cache: %s unreadable (%s); exporting again", path, exc)
    torch.manual_seed(0)
    with warnings.catch_warnings():  # an RNN's _flat_weights "assigned during export"
        warnings.simplefilter("ignore", UserWarning)
        program = torch.export.export(module.eval(), (x,))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, tmp)
        os.replace(tmp, path)  # (atomic: two runs at once each write a whole file)
    except OSError as exc:
        log.info("probe cache: not kept (%s)", exc)
    finally:  # (a run stopped mid-write leaves no part file)
        if tmp.exists():
            tmp.unlink()
    return program
