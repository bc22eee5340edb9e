"""The exceptions the store raises to its callers."""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base class of the store's own errors."""


class StoreUnavailable(StoreError):
    """A write could not be made durable (I/O error, disk full) or the store is closed.

    The mutation may or may not be on disk (like a timeout); the in-memory state no longer
    shows it. Callers answer "try later" (the gateway: HTTP 503 so Whapi redelivers).
    """


class DataDirLocked(StoreError):
    """Another process holds the exclusive lock on the data directory."""

    def __init__(self, lock_path: Path, holder: str | None = None) -> None:
        who = f" (pid {holder})" if holder else ""
        super().__init__(
            f"another wabot process{who} holds {lock_path}: one process per data directory is "
            "the rule (run hypercorn with a single worker, and stop the bot before running "
            "`wabot store restore` or `wabot store import`)"
        )
        self.lock_path = lock_path
        self.holder = holder


class StoreCorrupt(StoreError):
    """A data file is unreadable in a way that is not a torn journal tail: start refuses.

    ``str()`` is the server's start-up refusal; commands that are not starting anything say
    what they do and use ``damage`` and ``advice`` instead.
    """

    def __init__(
        self,
        path: Path,
        detail: str,
        line: int | None = None,
        backup: Path | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.detail = detail
        self.backup = backup
        super().__init__(f"{self.damage}. Refusing to start: {self.advice}")

    @property
    def damage(self) -> str:
        """Which file is damaged, where, and how."""
        where = f"{self.path}" + (f" line {self.line}" if self.line is not None else "")
        return f"{where} is corrupt: {self.detail}"

    @property
    def advice(self) -> str:
        """What to do about it: the newest valid backup and the restore command, if any."""
        if self.backup is not None:
            return (
                f"the newest valid backup is {self.backup}; restore it with "
                f"`wabot store restore {self.backup}` (the damaged files are kept aside)"
            )
        return (
            "no valid backup was found in the backups directory; move the damaged file "
            "aside only if you accept losing its contents"
        )
