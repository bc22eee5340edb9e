"""``wabot knowledge``: the business's documents in an OpenAI vector store, for the answers.

``wabot knowledge sync DIR`` keeps the store wabot keeps for the channel (its id in
``<data dir>/knowledge.json``) in step with the folder (``actors.upstream.knowledge``), showing
the indexing as a progress bar on a terminal and as one line per change of a document's state
otherwise, then a summary; ``wabot knowledge status`` shows the stores the answers search and
their documents' states. Exit status: 0 done; 1 a document failed or is still being indexed,
or OpenAI failed; 2 bad usage (no folder, no ``OPENAI_API_KEY``, or ``WABOT_VECTOR_STORE_IDS``
set, whose stores wabot does not manage).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import stamina
import trio

from actors.settings import Settings
from actors.upstream.knowledge import (
    FINAL,
    KnowledgeClient,
    KnowledgeError,
    StoreStatus,
    SyncReport,
)
from actors.upstream.knowledge_state import (
    DEFAULT_CHANNEL,
    KnowledgeStateError,
    load_state,
    state_path,
)
from actors.upstream.retry import RetryPolicy

DESCRIPTION = (
    "Answers from the business's own documents: `sync DIR` uploads a folder's documents (txt, "
    "md, pdf, docx, html, ...) to an OpenAI vector store that the answers search, keeping it "
    "in step (new and changed files uploaded, deleted ones removed, nothing sent twice); "
    "`status` shows the stores and their documents."
)
BAR_WIDTH = 30


def add_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="knowledge_command", required=True, metavar="COMMAND")
    sync = commands.add_parser(
        "sync",
        help="upload new and changed documents of DIR, remove deleted ones, wait for indexing",
        description="Keep the vector store in step with DIR (every level; hidden files are "
        "left out). Idempotent: a second run with nothing changed uploads nothing.",
    )
    sync.add_argument("folder", metavar="DIR", help="the folder of the business's documents")
    commands.add_parser(
        "status",
        help="show the vector stores the answers search and their documents' states",
        description="The stores (WABOT_VECTOR_STORE_IDS, or the one `sync` keeps) with each "
        "document and its state on OpenAI (in_progress, completed, failed).",
    )


def knowledge_client(settings: Settings, **overrides: Any) -> KnowledgeClient:
    """The client of the knowledge commands, with the settings' timeouts and retries."""
    values: dict[str, Any] = {
        "api_key": settings.openai_api_key or "",
        "base_url": settings.openai_base_url,
        "timeout": settings.openai_timeout_seconds,
        "policy": RetryPolicy(
            attempts=settings.openai_max_attempts,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
        ),
        "index_timeout": settings.knowledge_index_timeout_seconds,
        **overrides,
    }
    return KnowledgeClient(**values)


def run(
    args: argparse.Namespace,
    settings: Settings,
    *,
    out: TextIO | None = None,
    poll_seconds: float = 1.0,
) -> int:
    out = out or sys.stdout
    if not settings.openai_api_key:
        print(
            "wabot: OPENAI_API_KEY is not set: the documents go to your OpenAI project",
            file=sys.stderr,
        )
        return 2
    stamina.instrumentation.set_on_retry_hooks(())  # ``upstream.retry`` logs each retry
    if args.knowledge_command == "sync":
        if not Path(args.folder).is_dir():
            print(f"wabot: {args.folder} is not a folder", file=sys.stderr)
            return 2
        return trio.run(sync_command, settings, args.folder, out, poll_seconds)
    return trio.run(status_command, settings, out)


async def sync_command(settings: Settings, folder: str, out: TextIO, poll_seconds: float) -> int:
    if settings.vector_store_ids:
        print(
            "wabot: WABOT_VECTOR_STORE_IDS is set, so the answers search those stores, which "
            "wabot does not manage; unset it to let `wabot knowledge sync` keep a store",
            file=sys.stderr,
        )
        return 2
    directory = Path(folder)
    progress: TerminalProgress | LineProgress = (
        TerminalProgress(out) if out.isatty() else LineProgress(out)
    )
    client = knowledge_client(settings, poll_seconds=poll_seconds)
    try:
        report = await client.sync(directory, state_path(settings.data_dir), progress=progress)
    except (KnowledgeError, KnowledgeStateError, OSError) as exc:
        progress.finish()
        print(f"wabot: knowledge sync failed: {exc}", file=sys.stderr)
        return 1
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
    progress.finish()
    print(summary(report), file=out)
    return 0 if report.ok else 1


def summary(report: SyncReport) -> str:
    """The end of a sync: the counts, then one line per document that failed or waits."""
    counts = (
        f"{len(report.uploaded)} uploaded, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed, {len(report.failed)} failed, "
        f"{len(report.skipped)} skipped"
    )
    created = " (new)" if report.created else ""
    lines = [f"vector store {report.vector_store_id}{created}: {counts}"]
    lines += [f"failed: {name}: {reason}" for name, reason in report.failed]
    lines += [f"still indexing: {name} (see `wabot knowledge status`)" for name in report.pending]
    lines += [f"skipped: {name}: {reason}" for name, reason in report.skipped]
    return "\n".join(lines)


class LineProgress:
    """Not a terminal: one line per thing done and per change of a document's state."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._states: dict[str, str] = {}

    def note(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def indexing(self, states: list[tuple[str, str]]) -> None:
        for name, state in states:
            if self._states.get(name) != state:
                self._states[name] = state
                print(f"{name}: {state}", file=self.out, flush=True)

    def finish(self) -> None:
        pass


class TerminalProgress:
    """A terminal: the indexing as one line redrawn in place, ``[####....] 3/5 indexed``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._drawn = False

    def note(self, line: str) -> None:
        self._clear()
        print(line, file=self.out, flush=True)

    def indexing(self, states: list[tuple[str, str]]) -> None:
        total = len(states)
        done = sum(1 for _name, state in states if state in FINAL)
        failed = sum(1 for _name, state in states if state in {"failed", "cancelled"})
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        extra = f", {failed} failed" if failed else ""
        self.out.write(f"\rindexing [{bar}] {done}/{total} done{extra}")
        self.out.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self._drawn = False

    def finish(self) -> None:
        self._clear()


async def status_command(settings: Settings, out: TextIO) -> int:
    path = state_path(settings.data_dir)
    try:
        state = load_state(path)
    except KnowledgeStateError as exc:
        print(f"wabot: {exc}", file=sys.stderr)
        return 1
    entry = state.channels.get(DEFAULT_CHANNEL)
    names = {doc.file_id: doc.name for doc in entry.files.values()} if entry else {}
    if settings.vector_store_ids:
        stores = dict.fromkeys(settings.vector_store_ids, "WABOT_VECTOR_STORE_IDS")
    elif entry is not None and entry.vector_store_id:
        stores = {entry.vector_store_id: f"kept by wabot in {path}"}
    else:
        print(
            "no vector store yet: the answers search no documents; run `wabot knowledge sync DIR`",
            file=out,
        )
        return 0
    client = knowledge_client(settings)
    try:
        found = await client.status(stores, names)
    except KnowledgeError as exc:
        print(f"wabot: knowledge status failed: {exc}", file=sys.stderr)
        return 1
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
    print(describe(found), file=out)
    return 0 if all(f.status == "completed" for s in found for f in s.files) else 1


def describe(stores: list[StoreStatus]) -> str:
    lines = []
    for store in stores:
        lines.append(
            f"vector store {store.vector_store_id} {store.name!r} ({store.source}): "
            f"{store.status}, {len(store.files)} document(s)"
        )
        for file in store.files:
            reason = f": {file.error}" if file.error else ""
            lines.append(f"  {file.status:<12} {file.name} ({file.file_id}){reason}")
    return "\n".join(lines)
