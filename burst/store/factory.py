"""Build an object store from a plain config dict (as read from the TOML/YAML settings)."""

from __future__ import annotations

from pathlib import Path

from burst.store.base import ObjectStore

STORE_KINDS = ("dir", "s3", "oss", "memory", "sqs")


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
    if kind == "sqs":  # tensors through queues; plan data and claim checks in a backing store
        from burst.store.sqs import SqsStore

        backing = cfg.get("backing") or {"kind": "dir"}
        return SqsStore.from_config(cfg, make_store({**backing, "encrypt": False}))
    raise ValueError(f"unknown store kind {kind!r}; expected one of: {', '.join(STORE_KINDS)}")


def with_default_roots(cfg: dict, objects_dir) -> dict:
    """``cfg`` with a directory store's root (its own, or an sqs store's backing one) defaulting
    to ``objects_dir`` (the gateway's data directory)."""
    cfg = dict(cfg)
    if cfg.get("kind", "dir") == "dir":
        cfg.setdefault("kind", "dir")
        cfg.setdefault("root", str(Path(objects_dir).resolve()))
    backing = cfg.get("backing")
    if isinstance(backing, dict) and backing.get("kind") == "dir" and not backing.get("root"):
        cfg["backing"] = {**backing, "root": str(Path(objects_dir).resolve())}
    return cfg
