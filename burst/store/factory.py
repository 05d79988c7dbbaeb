"""Build an object store from a plain config dict (as read from the TOML/YAML settings)."""

from __future__ import annotations

from burst.store.base import ObjectStore

STORE_KINDS = ("dir", "s3", "oss", "memory")


def make_store(cfg: dict) -> ObjectStore:
    """Build the store named by ``cfg["kind"]`` (one of ``STORE_KINDS``) from the rest of ``cfg``."""
    if not isinstance(cfg, dict):
        raise ValueError(f"store config must be a dict, got {type(cfg).__name__}")
    kind = cfg.get("kind")
    from burst.store.encrypted import EncryptedStore, wants_encryption

    if wants_encryption(cfg):  # "encrypt": AES-GCM per-request tensors; default on for s3/oss
        return EncryptedStore(make_store({**cfg, "encrypt": False}))
    # Imports are local so a deployment without aioboto3 or oss2 can still use the others.
    if kind == "dir":
        from burst.store.local_dir import LocalDirStore

        return LocalDirStore.from_config(cfg)
    if kind == "memory":
        from burst.store.memory import MemoryStore

        return MemoryStore.from_config(cfg)
    if kind == "s3":
        from burst.store.s3 import S3Store

        return S3Store.from_config(cfg)
    if kind == "oss":
        from burst.store.oss import OSSStore

        return OSSStore.from_config(cfg)
    raise ValueError(f"unknown store kind {kind!r}; expected one of: {', '.join(STORE_KINDS)}")
