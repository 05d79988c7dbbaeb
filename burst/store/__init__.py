"""How tensors travel between master and workers: object stores behind one small interface."""

from burst.store.base import ObjectStore, StoreError
from burst.store.factory import STORE_KINDS, make_store
from burst.store.local_dir import LocalDirStore
from burst.store.memory import MemoryStore

__all__ = ["ObjectStore", "StoreError", "make_store", "STORE_KINDS", "LocalDirStore", "MemoryStore"]
