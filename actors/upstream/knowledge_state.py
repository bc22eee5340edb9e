"""What wabot remembers of the business's documents on OpenAI: ``<data dir>/knowledge.json``.

One entry per channel (``default`` until channels exist): the id of its OpenAI vector store
and, for each document uploaded into it, the document's key (``document_key``: the SHA-256 of
its name and content) → the OpenAI file id and the name. ``wabot knowledge sync``
(``actors.upstream.knowledge``) is the one writer; it writes the whole file atomically
(temporary file, fsync, rename, fsync of the directory), so a reader sees the old state or the
new one, never half of it.

Turns find their stores through ``StoreIds``: ``WABOT_VECTOR_STORE_IDS`` as given when it is
set, else the channel's store from this file, which is read again when it changes (looked at
no more often than every ``RECHECK_SECONDS``), so a first sync while the bot runs takes
effect without a restart. ``StoreIds.tool`` is the ``file_search`` tool of a turn, or None
when there is no store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import attrs

log = logging.getLogger("actors.upstream.knowledge_state")

STATE_FILE = "knowledge.json"
DEFAULT_CHANNEL = "default"
VERSION = 1
#: How often a turn may look at the state file for a change (one ``stat`` at most).
RECHECK_SECONDS = 5.0


class KnowledgeStateError(Exception):
    """The state file exists but cannot be read or understood."""


def document_key(name: str, content: bytes) -> str:
    """The key of a document: SHA-256 of its name and content (a rename counts as a change,
    since answers cite the file by name)."""
    digest = hashlib.sha256(name.encode("utf-8"))
    digest.update(b"\0")
    digest.update(content)
    return digest.hexdigest()


@attrs.frozen
class Document:
    """A document uploaded into the channel's vector store."""

    file_id: str
    name: str


@attrs.define
class Channel:
    """One channel's knowledge: its vector store and the documents wabot put there."""

    vector_store_id: str | None = None
    #: ``document_key`` → the uploaded document.
    files: dict[str, Document] = attrs.Factory(dict)


@attrs.define
class KnowledgeState:
    channels: dict[str, Channel] = attrs.Factory(dict)

    def channel(self, name: str = DEFAULT_CHANNEL) -> Channel:
        """The channel's entry (created empty when new)."""
        return self.channels.setdefault(name, Channel())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "channels": {
                name: {
                    "vector_store_id": channel.vector_store_id,
                    "files": {
                        key: {"file_id": doc.file_id, "name": doc.name}
                        for key, doc in sorted(channel.files.items(), key=lambda kv: kv[1].name)
                    },
                }
                for name, channel in self.channels.items()
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> KnowledgeState:
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise KnowledgeStateError(f"not a version {VERSION} knowledge state")
        state = cls()
        for name, entry in (data.get("channels") or {}).items():
            store_id = entry.get("vector_store_id")
            if store_id is not None and not isinstance(store_id, str):
                raise KnowledgeStateError(f"channel {name!r}: vector_store_id is not a string")
            files = {
                key: Document(str(doc["file_id"]), str(doc["name"]))
                for key, doc in (entry.get("files") or {}).items()
            }
            state.channels[name] = Channel(store_id, files)
        return state


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def load_state(path: Path) -> KnowledgeState:
    """The state in ``path``; empty when the file does not exist yet."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return KnowledgeState()
    except OSError as exc:
        raise KnowledgeStateError(f"{path}: {exc}") from exc
    try:
        return KnowledgeState.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError, KnowledgeStateError) as exc:
        raise KnowledgeStateError(f"{path}: {exc}") from exc


def save_state(path: Path, state: KnowledgeState) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename, directory fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    data = json.dumps(state.to_json(), ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    with open(temp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class StoreIds:
    """The vector stores a turn searches: the configured ones, else the channel's own."""

    def __init__(
        self,
        *,
        configured: tuple[str, ...],
        path: Path,
        max_results: int,
        channel: str = DEFAULT_CHANNEL,
    ) -> None:
        self.configured = configured
        self.path = path
        self.max_results = max_results
        self.channel = channel
        self._ids: tuple[str, ...] = ()
        self._seen: tuple[int, int] | None = None
        self._checked_at: float | None = None

    def current(self) -> tuple[str, ...]:
        if self.configured:
            return self.configured
        now = time.monotonic()
        if self._checked_at is None or now - self._checked_at >= RECHECK_SECONDS:
            self._checked_at = now
            self._reload()
        return self._ids

    def tool(self) -> dict[str, Any] | None:
        """The turn's ``file_search`` tool, or None without a store."""
        ids = self.current()
        if not ids:
            return None
        return {
            "type": "file_search",
            "vector_store_ids": list(ids),
            "max_num_results": (self.max_results),
        }

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._ids, self._seen = (), None
            return
        except OSError as exc:
            log.warning("cannot look at %s: %s; keeping the stores known so far", self.path, exc)
            return
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        try:
            state = load_state(self.path)
        except KnowledgeStateError as exc:
            log.warning("%s; keeping the stores known so far", exc)
            return
        self._seen = seen
        entry = state.channels.get(self.channel)
        ids = (entry.vector_store_id,) if entry and entry.vector_store_id else ()
        if ids != self._ids:
            log.info("answers search the documents of vector store %s", ", ".join(ids) or "none")
        self._ids = ids
