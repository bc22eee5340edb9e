"""Keeping an OpenAI vector store in step with a folder of documents (``wabot knowledge``).

``KnowledgeClient.sync(folder, state_path)``, the contract:

- the channel's vector store is the one the state file names (``actors.upstream.
  knowledge_state``); it is created on first use, and again (with every document uploaded
  anew) when OpenAI no longer knows it;
- a document is identified by ``document_key`` (its name and content): a new or changed file
  is uploaded (``files.create``, purpose ``assistants``) and attached to the store
  (``vector_stores.files.create``); an unchanged one is left alone, so a second run with
  nothing changed uploads nothing; a file deleted from the folder (or the old version of a
  changed one) is detached and deleted, after the new uploads were indexed, so answers keep a
  version meanwhile. Files of the store that wabot did not put there are left alone;
- it waits until OpenAI has indexed every attached document (polling the store's files),
  reporting each state change to the ``Progress``, for at most ``index_timeout`` seconds;
- a document OpenAI could not index is detached and deleted and reported with OpenAI's
  reason (it is tried again by the next run); unsupported types and unreadable files are
  reported as skipped; the state file is written after every change, so an interrupted run
  loses nothing the next one needs.

``status`` describes stores and their documents. Every call goes through the SDK's typed
resources, under ``RetryPolicy`` with OpenAI's classifier (``model.retryable``) and a deadline
per attempt; a failed call is a ``KnowledgeError`` (``StoreNotFound`` for a 404). A retried
``files.create`` whose first attempt did reach OpenAI may leave an unattached file there
(OpenAI takes no idempotency key); it is never used.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs
import openai
import trio

from actors.upstream.knowledge_state import (
    DEFAULT_CHANNEL,
    Channel,
    Document,
    KnowledgeState,
    document_key,
    load_state,
    save_state,
)
from actors.upstream.model import FAILURES, pooled_http_client, retryable
from actors.upstream.retry import RetryPolicy

log = logging.getLogger("actors.upstream.knowledge")

T = TypeVar("T")

#: What OpenAI's file search accepts, by extension.
_EXTENSIONS = "c cpp cs css doc docx go html java js json md pdf php pptx py rb sh tex ts txt"
SUPPORTED = frozenset(f".{extension}" for extension in _EXTENSIONS.split())
#: OpenAI's limit of one uploaded file.
MAX_FILE_BYTES = 512 * 2**20
#: The states a vector store file does not leave.
FINAL = frozenset({"completed", "failed", "cancelled"})


class KnowledgeError(Exception):
    """An OpenAI call of the knowledge commands failed (after its retries)."""


class StoreNotFound(KnowledgeError):
    """OpenAI does not know the vector store or file (404)."""


class Progress(Protocol):
    """Where a sync reports what it does (``gateway.knowledge_cli`` prints it)."""

    def note(self, line: str) -> None:
        """One thing done: a store created, a document uploaded or removed."""

    def indexing(self, states: list[tuple[str, str]]) -> None:
        """Every poll while indexing: (name, state) of each document waited for."""


class QuietProgress:
    """A ``Progress`` that logs at INFO (the sandbox's sync at start)."""

    def note(self, line: str) -> None:
        log.info("knowledge: %s", line)

    def indexing(self, states: list[tuple[str, str]]) -> None:
        pass


@attrs.define
class SyncReport:
    """What one sync did."""

    vector_store_id: str = ""
    created: bool = False
    uploaded: list[str] = attrs.Factory(list)
    unchanged: list[str] = attrs.Factory(list)
    removed: list[str] = attrs.Factory(list)
    #: (name, reason): documents OpenAI could not take or index.
    failed: list[tuple[str, str]] = attrs.Factory(list)
    #: (name, reason): files of the folder that were not sent.
    skipped: list[tuple[str, str]] = attrs.Factory(list)
    #: Still being indexed when the wait ended.
    pending: list[str] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending


@attrs.frozen
class FileStatus:
    name: str
    file_id: str
    status: str
    error: str | None = None


@attrs.frozen
class StoreStatus:
    vector_store_id: str
    name: str
    status: str
    files: tuple[FileStatus, ...]
    #: Where the store came from: "kept by wabot" or "WABOT_VECTOR_STORE_IDS".
    source: str = ""


@attrs.frozen
class _Local:
    """A document of the folder."""

    name: str
    path: Path
    key: str


def scan(folder: Path) -> tuple[list[_Local], list[tuple[str, str]]]:
    """The folder's documents (every level, hidden files and folders left out), by name, and
    the files that cannot be sent with the reason."""
    documents: list[_Local] = []
    skipped: list[tuple[str, str]] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        name = relative.as_posix()
        if path.suffix.lower() not in SUPPORTED:
            skipped.append((name, f"type {path.suffix or '(none)'} is not searchable"))
            continue
        try:
            content = path.read_bytes()
        except OSError as exc:
            skipped.append((name, f"unreadable: {exc.strerror or exc}"))
            continue
        if not content:
            skipped.append((name, "empty"))
        elif len(content) > MAX_FILE_BYTES:
            skipped.append((name, "larger than 512 MB"))
        else:
            documents.append(_Local(name, path, document_key(name, content)))
    return documents, skipped


async def _save(path: Path, state: KnowledgeState) -> None:
    await trio.to_thread.run_sync(save_state, path, state)


def _error(exc: BaseException) -> KnowledgeError:
    if isinstance(exc, openai.NotFoundError):
        return StoreNotFound(f"OpenAI error 404: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        return KnowledgeError(f"OpenAI error {exc.status_code}: {exc.message}")
    return KnowledgeError(f"OpenAI failed after retries: {exc.__class__.__name__}: {exc}")


class KnowledgeClient:
    """Owns one ``openai.AsyncOpenAI`` (closed by ``aclose``)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float,
        policy: RetryPolicy,
        index_timeout: float,
        poll_seconds: float = 1.0,
    ) -> None:
        self._timeout = timeout
        self._policy = policy
        self.index_timeout = index_timeout
        self.poll_seconds = poll_seconds
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=pooled_http_client(4),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async for attempt in self._policy.retrying(retryable, what=what):
                with attempt, trio.fail_after(self._timeout):
                    return await call()
        except FAILURES as exc:
            raise _error(exc) from exc
        raise AssertionError("unreachable: the retry loop returns or raises")

    # -- sync ----------------------------------------------------------------------------------

    async def sync(
        self,
        folder: Path,
        state_path: Path,
        *,
        channel: str = DEFAULT_CHANNEL,
        progress: Progress | None = None,
    ) -> SyncReport:
        progress = progress or QuietProgress()
        documents, skipped = await trio.to_thread.run_sync(scan, folder)
        report = SyncReport(skipped=skipped)
        state = await trio.to_thread.run_sync(load_state, state_path)
        entry = state.channel(channel)
        report.vector_store_id, report.created = await self._ensure_store(
            state, state_path, entry, channel, progress
        )
        store_id = report.vector_store_id
        remote = await self._remote_files(store_id)
        wanted = {doc.key: doc for doc in documents}
        for key, doc in list(entry.files.items()):
            found = remote.get(doc.file_id)
            if found is None:
                # Detached on OpenAI's side (the dashboard, another tool): sent again if wanted.
                del entry.files[key]
            elif found.status in {"failed", "cancelled"} and key in wanted:
                await self._remove(store_id, doc)
                del entry.files[key]
        await _save(state_path, state)
        waiting: dict[str, str] = {
            doc.file_id: doc.name
            for doc in entry.files.values()
            if doc.file_id in remote and remote[doc.file_id].status == "in_progress"
        }
        for key, local in wanted.items():
            if key in entry.files:
                report.unchanged.append(local.name)
                continue
            try:
                uploaded = await self._upload(store_id, local)
            except (KnowledgeError, OSError) as exc:
                report.failed.append((local.name, str(exc)))
                progress.note(f"{local.name}: upload failed: {exc}")
                continue
            entry.files[key] = uploaded
            await _save(state_path, state)
            report.uploaded.append(local.name)
            waiting[uploaded.file_id] = local.name
            progress.note(f"uploaded {local.name}")
        await self._wait_indexed(store_id, waiting, entry, state, state_path, report, progress)
        for key, doc in list(entry.files.items()):
            if key in wanted:
                continue
            await self._remove(store_id, doc)
            del entry.files[key]
            await _save(state_path, state)
            report.removed.append(doc.name)
            progress.note(f"removed {doc.name}")
        return report

    async def _ensure_store(
        self,
        state: KnowledgeState,
        state_path: Path,
        entry: Channel,
        channel: str,
        progress: Progress,
    ) -> tuple[str, bool]:
        if entry.vector_store_id is not None:
            store_id = entry.vector_store_id
            try:
                await self._call(
                    "vector_stores.retrieve",
                    lambda: self._client.vector_stores.retrieve(store_id),
                )
                return store_id, False
            except StoreNotFound:
                progress.note(f"OpenAI no longer knows vector store {store_id}; making a new one")
        store = await self._call(
            "vector_stores.create",
            lambda: self._client.vector_stores.create(
                name=f"wabot {channel}", metadata={"app": "wabot", "channel": channel}
            ),
        )
        entry.vector_store_id, entry.files = store.id, {}
        await _save(state_path, state)
        progress.note(f"created vector store {store.id}")
        return store.id, True

    async def _remote_files(self, store_id: str) -> dict[str, Any]:
        """Every file of the store (file id → its vector store file), page by page."""
        found: dict[str, Any] = {}
        after: str | None = None
        while True:
            cursor = after

            def page_call(cursor: str | None = cursor) -> Awaitable[Any]:
                if cursor is None:
                    return self._client.vector_stores.files.list(store_id, limit=100)
                return self._client.vector_stores.files.list(store_id, limit=100, after=cursor)

            page = await self._call("vector_stores.files.list", page_call)
            for item in page.data:
                found[item.id] = item
            if not page.has_more or not page.data:
                return found
            after = page.data[-1].id

    async def _upload(self, store_id: str, local: _Local) -> Document:
        content = await trio.Path(local.path).read_bytes()
        if document_key(local.name, content) != local.key:
            raise KnowledgeError("the file changed while it was being synced; run again")
        mime = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
        uploaded = await self._call(
            "files.create",
            lambda: self._client.files.create(
                file=(local.name, content, mime), purpose="assistants"
            ),
        )
        try:
            await self._call(
                "vector_stores.files.create",
                lambda: self._client.vector_stores.files.create(
                    store_id, file_id=uploaded.id, attributes={"name": local.name[:512]}
                ),
            )
        except KnowledgeError:
            await self._delete_file(uploaded.id)
            raise
        return Document(uploaded.id, local.name)

    async def _wait_indexed(
        self,
        store_id: str,
        waiting: dict[str, str],
        entry: Channel,
        state: KnowledgeState,
        state_path: Path,
        report: SyncReport,
        progress: Progress,
    ) -> None:
        """Poll the store's files until none of ``waiting`` is in progress, or the deadline."""
        if not waiting:
            return
        states = {file_id: "in_progress" for file_id in waiting}
        remote: dict[str, Any] = {}
        with trio.move_on_after(self.index_timeout):
            while True:
                remote = await self._remote_files(store_id)
                for file_id in waiting:
                    item = remote.get(file_id)
                    states[file_id] = item.status if item is not None else "cancelled"
                progress.indexing([(waiting[f], states[f]) for f in waiting])
                if all(status in FINAL for status in states.values()):
                    break
                await trio.sleep(self.poll_seconds)
        for file_id, name in waiting.items():
            status = states[file_id]
            if status == "completed":
                continue
            if status == "in_progress":
                report.pending.append(name)
                continue
            item = remote.get(file_id)
            last_error = getattr(item, "last_error", None)
            reason = getattr(last_error, "message", None) or f"indexing {status}"
            report.failed.append((name, reason))
            progress.note(f"{name}: not indexed: {reason}")
            for key, doc in list(entry.files.items()):
                if doc.file_id == file_id:
                    await self._remove(store_id, doc)
                    del entry.files[key]
                    await _save(state_path, state)

    async def _remove(self, store_id: str, doc: Document) -> None:
        """Detach a document from the store and delete its file (either may be gone already)."""
        with contextlib.suppress(StoreNotFound):
            await self._call(
                "vector_stores.files.delete",
                lambda: self._client.vector_stores.files.delete(
                    doc.file_id, vector_store_id=store_id
                ),
            )
        await self._delete_file(doc.file_id)

    async def _delete_file(self, file_id: str) -> None:
        with contextlib.suppress(StoreNotFound):
            await self._call("files.delete", lambda: self._client.files.delete(file_id))

    # -- status --------------------------------------------------------------------------------

    async def status(self, store_ids: dict[str, str], names: dict[str, str]) -> list[StoreStatus]:
        """Each store of ``store_ids`` (id → where it came from) with its documents; ``names``
        gives the file names wabot knows (file id → name), others are asked of OpenAI."""
        out: list[StoreStatus] = []
        for store_id, source in store_ids.items():
            store = await self._call(
                "vector_stores.retrieve",
                partial(self._client.vector_stores.retrieve, store_id),
            )
            remote = await self._remote_files(store_id)
            files = []
            for file_id, item in remote.items():
                attributes = getattr(item, "attributes", None) or {}
                name = names.get(file_id) or attributes.get("name")
                if not isinstance(name, str):
                    name = await self._file_name(file_id)
                last_error = getattr(item, "last_error", None)
                files.append(
                    FileStatus(name, file_id, item.status, getattr(last_error, "message", None))
                )
            files.sort(key=lambda f: f.name)
            out.append(StoreStatus(store.id, store.name, store.status, tuple(files), source))
        return out

    async def _file_name(self, file_id: str) -> str:
        try:
            found = await self._call("files.retrieve", lambda: self._client.files.retrieve(file_id))
        except StoreNotFound:
            return f"({file_id}, deleted)"
        return found.filename
