"""The names of the files in the data directory, and small helpers about them."""

from __future__ import annotations

from pathlib import Path

import attrs

#: Backup kinds made by the store itself; anything else is kept as "manual".
HOURLY = "hourly"
DAILY = "daily"


@attrs.frozen
class DataFiles:
    """Paths of everything the store keeps under ``data_dir``."""

    root: Path

    @property
    def records(self) -> Path:
        """The records snapshot, keyed by user id (the original's documented format)."""
        return self.root / "threads-data.json"

    @property
    def inbox(self) -> Path:
        """Inbox + dedupe snapshot; also the snapshot's commit point (it holds the seq)."""
        return self.root / "inbox.json"

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def old_journal(self) -> Path:
        """The journal being folded into a snapshot (exists only during a compaction)."""
        return self.root / "journal.old.jsonl"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def aside(self) -> Path:
        """Where restore moves damaged files (never deleted by the store)."""
        return self.root / "aside"

    def journals(self) -> list[Path]:
        """Journal segments in replay order."""
        return [self.old_journal, self.journal]
