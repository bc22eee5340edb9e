"""wabot's persistence: the store actor, its JSON snapshot + journal, backups and the inbox.

``open_store(StoreConfig(data_dir=...))`` yields the ``Store``; see ``store.actor``. The
contract of the durable state is ``store.backend``; the JSON file backend behind it is
``store.jsonbackend`` (its commit log, snapshots and maintenance in ``store.commitlog``,
``store.recovery`` and ``store.maintenance``).
"""

from store.actor import Store, open_store
from store.config import StoreConfig
from store.errors import DataDirLocked, StoreCorrupt, StoreUnavailable
from store.records import InboxEntry, UserRecord
from store.status import InboxStatus, StoreStats

__all__ = [
    "DataDirLocked",
    "InboxEntry",
    "InboxStatus",
    "Store",
    "StoreConfig",
    "StoreCorrupt",
    "StoreStats",
    "StoreUnavailable",
    "UserRecord",
    "open_store",
]
