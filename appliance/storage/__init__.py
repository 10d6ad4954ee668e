"""Durable storage: one writer connection owned by one worker thread, and the small key/value state table."""

from appliance.storage.db import is_busy, is_disk_full, transaction
from appliance.storage.state import StateStore
from appliance.storage.writer import Storage, StorageClosed, StorageWorker

__all__ = ["StateStore", "Storage", "StorageClosed", "StorageWorker", "is_busy", "is_disk_full", "transaction"]
