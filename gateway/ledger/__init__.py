"""The request ledger: one durable row per answered request (SQLite or PostgreSQL)."""

from .config import LedgerSettings
from .core import Ledger, LedgerBackend, make_backend
from .row import COLUMNS, LedgerRow, row_values

__all__ = [
    "COLUMNS",
    "Ledger",
    "LedgerBackend",
    "LedgerRow",
    "LedgerSettings",
    "make_backend",
    "row_values",
]
