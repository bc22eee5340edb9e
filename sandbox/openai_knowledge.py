"""Files, vector stores and a deterministic file search, for ``FakeOpenAI``.

Routes (bodies validated against ``openai_files_create``, ``openai_vector_stores_create`` and
``openai_vector_store_files_create``): ``POST /v1/files`` (multipart), ``GET``/``DELETE
/v1/files/{id}``; ``POST /v1/vector_stores``, ``GET``/``DELETE /v1/vector_stores/{id}``;
``POST``/``GET /v1/vector_stores/{id}/files`` (list: ``limit``, ``after``, ``order``,
``filter``), ``GET``/``DELETE /v1/vector_stores/{id}/files/{file_id}``.

Indexing: a file attached to a store is ``in_progress`` for ``index_seconds``, then
``completed``; or ``failed`` when its name matches ``fail_pattern`` (``last_error`` code
``invalid_file``) or its type is not searchable (``unsupported_file``). The state follows the
clock, so no task runs. Faults on these paths come from the fake's ``faults`` as for any route.

Search (``search``): a ``responses.create`` whose ``file_search`` tool names stores, and whose
user text has a word of ``MIN_WORD`` letters or more (accents and case aside, common words
aside) that an indexed document of those stores contains, finds the documents' sentences with
the most such words, best first. ``FakeOpenAI`` then puts a ``file_search_call`` item before
the answer, and its default responder quotes the best sentence with a ``file_citation``
annotation and a citation marker (``【4:0†name】``), as OpenAI's answers may carry. Text is
read from text files (txt, md, html with its tags dropped, json...) and docx; a PDF is indexed
but never found.

``to_json``/``load_json`` keep the files and stores in the fake's ``state_file`` (a file
being indexed is saved as indexed), and ``on_change`` is called after every change.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
import time
import unicodedata
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sandbox.base import BoundedDict, Request, Response, Route, json_response, route
from sandbox.faults import FaultRule

MIN_WORD = 4
#: Words too common to tell documents apart (accents and case folded).
_STOPWORDS = """
    para como este esta estas estos esto tiene tienen tengo hola quiero quisiera puedo puede
    pueden sobre cual cuales cuanto cuanta cuantos cuantas donde cuando porque pero tambien
    gracias favor necesito saber hacer algo alguna alguno todo todos todas desde hasta entre
    ellos ellas usted ustedes nuestro nuestra nuestros nuestras with that this have what your
    from there about would could please
"""
STOPWORDS = frozenset(_STOPWORDS.split())
_EXTENSIONS = "c cpp cs css doc docx go html java js json md pdf php pptx py rb sh tex ts txt"
SEARCHABLE = frozenset(f".{extension}" for extension in _EXTENSIONS.split())
_WORD = re.compile(r"[^\W\d_]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_TAG = re.compile(r"<[^>]+>")


def fold(word: str) -> str:
    """A word without accents, case-folded (``Política`` → ``politica``)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> set[str]:
    """The distinct searchable words of ``text``, folded."""
    found = {fold(w) for w in _WORD.findall(text) if len(w) >= MIN_WORD}
    return found - STOPWORDS


def document_text(filename: str, data: bytes) -> str:
    """The text the fake searches in a document ('' when it cannot read one)."""
    suffix = filename.lower().rpartition(".")[2]
    if suffix == "pdf":
        return ""
    if suffix == "docx":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                xml = archive.read("word/document.xml").decode("utf-8", "replace")
        except (zipfile.BadZipFile, KeyError):
            return ""
        return _TAG.sub(" ", xml.replace("</w:p>", "\n"))
    text = data.decode("utf-8", "replace")
    return _TAG.sub(" ", text) if suffix == "html" else text


def sentences(text: str) -> list[str]:
    cleaned = (" ".join(s.split()) for s in _SENTENCE.split(text))
    return [s.lstrip("#-*• ").strip() for s in cleaned if s.strip("#-*• ")]


@attrs.define
class FakeFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@attrs.define
class StoreFile:
    """A file attached to a store: when it is indexed, or why it fails."""

    file_id: str
    created_at: int
    ready_at: float
    failure: tuple[str, str] | None
    attributes: dict[str, Any] | None


@attrs.define
class FakeStore:
    id: str
    name: str
    metadata: dict[str, str]
    created_at: int
    files: dict[str, StoreFile] = attrs.Factory(dict)


@attrs.frozen
class Hit:
    """A sentence a search found: its document, the sentence and how many words matched."""

    file_id: str
    filename: str
    text: str
    score: int


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


class KnowledgeBase:
    """The fake's files and vector stores; ``error`` builds OpenAI's error answers."""

    def __init__(
        self,
        error: Callable[..., Response],
        *,
        index_seconds: float = 0.0,
        fail_pattern: str | None = None,
        max_files: int = 10_000,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._error = error
        self._changed = on_change
        #: How long a file attached to a store stays ``in_progress``.
        self.index_seconds = index_seconds
        #: Files whose name matches this regular expression fail their indexing.
        self.fail_pattern: re.Pattern[str] | None = (
            re.compile(fail_pattern) if fail_pattern else None
        )
        self.files: BoundedDict[str, FakeFile] = BoundedDict(max_files)
        self.stores: dict[str, FakeStore] = {}
        #: Every search made: (vector store ids, the user's words) — for tests.
        self.searches: list[tuple[tuple[str, ...], frozenset[str]]] = []

    # -- state -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [
                {**attrs.asdict(f), "data": base64.b64encode(f.data).decode("ascii")}
                for f in self.files.values()
            ],
            "stores": [
                {
                    "id": store.id,
                    "name": store.name,
                    "metadata": store.metadata,
                    "created_at": store.created_at,
                    "files": [
                        {
                            "file_id": e.file_id,
                            "created_at": e.created_at,
                            "failure": list(e.failure) if e.failure else None,
                            "attributes": e.attributes,
                        }
                        for e in store.files.values()
                    ],
                }
                for store in self.stores.values()
            ],
        }

    def load_json(self, saved: Mapping[str, Any]) -> None:
        for entry in saved.get("files") or ():
            data = base64.b64decode(entry["data"])
            self.files[entry["id"]] = FakeFile(
                entry["id"], entry["filename"], entry["purpose"], data, entry["created_at"]
            )
        for entry in saved.get("stores") or ():
            store = FakeStore(entry["id"], entry["name"], entry["metadata"], entry["created_at"])
            for item in entry.get("files") or ():
                failure = tuple(item["failure"]) if item.get("failure") else None
                store.files[item["file_id"]] = StoreFile(
                    item["file_id"], item["created_at"], 0.0, failure, item.get("attributes")
                )
            self.stores[store.id] = store

    @staticmethod
    def status_of(entry: StoreFile) -> str:
        if time.monotonic() < entry.ready_at:
            return "in_progress"
        return "failed" if entry.failure is not None else "completed"

    def store_file_json(self, store: FakeStore, entry: StoreFile) -> dict[str, Any]:
        status = self.status_of(entry)
        error = None
        if status == "failed" and entry.failure is not None:
            error = {"code": entry.failure[0], "message": entry.failure[1]}
        data = self.files.get(entry.file_id)
        return {
            "id": entry.file_id,
            "object": "vector_store.file",
            "created_at": entry.created_at,
            "vector_store_id": store.id,
            "status": status,
            "last_error": error,
            "usage_bytes": len(data.data) if data is not None and status == "completed" else 0,
            "attributes": entry.attributes,
            "chunking_strategy": {
                "type": "static",
                "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
            },
        }

    def store_json(self, store: FakeStore) -> dict[str, Any]:
        counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
        usage = 0
        for entry in store.files.values():
            status = self.status_of(entry)
            counts[status] += 1
            data = self.files.get(entry.file_id)
            if status == "completed" and data is not None:
                usage += len(data.data)
        return {
            "id": store.id,
            "object": "vector_store",
            "created_at": store.created_at,
            "name": store.name,
            "metadata": store.metadata,
            "status": "in_progress" if counts["in_progress"] else "completed",
            "usage_bytes": usage,
            "file_counts": {**counts, "total": len(store.files)},
            "last_active_at": store.created_at,
            "expires_after": None,
            "expires_at": None,
        }

    def documents(self, store_id: str) -> list[FakeFile]:
        """The indexed documents of a store, by file name."""
        store = self.stores.get(store_id)
        if store is None:
            return []
        found = [
            self.files[entry.file_id]
            for entry in store.files.values()
            if entry.file_id in self.files and self.status_of(entry) == "completed"
        ]
        return sorted(found, key=lambda f: (f.filename, f.id))

    # -- search ----------------------------------------------------------------------------

    def unknown_store(self, tools: list[dict[str, Any]]) -> str | None:
        """The first vector store id a ``file_search`` tool names that does not exist."""
        for tool in tools:
            if tool.get("type") == "file_search":
                for store_id in tool.get("vector_store_ids") or ():
                    if store_id not in self.stores:
                        return str(store_id)
        return None

    def search(self, tools: list[dict[str, Any]], text: str | None) -> list[Hit]:
        """The sentences a ``file_search`` tool finds for the user's ``text``, best first."""
        tool = next((t for t in tools if t.get("type") == "file_search"), None)
        if tool is None or not text:
            return []
        store_ids = tuple(tool.get("vector_store_ids") or ())
        query = frozenset(words(text))
        self.searches.append((store_ids, query))
        if not query:
            return []
        hits: list[tuple[int, int, Hit]] = []
        order = 0
        for store_id in store_ids:
            for document in self.documents(store_id):
                for sentence in sentences(document_text(document.filename, document.data)):
                    score = len(query & words(sentence))
                    if score:
                        hits.append(
                            (-score, order, Hit(document.id, document.filename, sentence, score))
                        )
                    order += 1
        hits.sort(key=lambda h: (h[0], h[1]))
        return [hit for _s, _o, hit in hits[: int(tool.get("max_num_results") or 10)]]

    @staticmethod
    def search_call(text: str) -> dict[str, Any]:
        """The ``file_search_call`` output item of a search."""
        return {
            "type": "file_search_call",
            "id": f"fs_{secrets.token_hex(24)}",
            "status": "completed",
            "queries": [text],
            "results": None,
        }

    @staticmethod
    def quoting_answer(hits: list[Hit]) -> list[dict[str, Any]]:
        """The default responder's answer to a search: the best sentence, cited."""
        best = hits[0]
        text = f"Según nuestra información: {best.text}"
        index = len(text)
        text += f"【4:0†{best.filename}】"
        annotation = {
            "type": "file_citation",
            "file_id": best.file_id,
            "filename": best.filename,
            "index": index,
        }
        content = [{"type": "output_text", "text": text, "annotations": [annotation]}]
        return [{"type": "message", "content": content}]

    # -- routes ----------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            route(
                "POST",
                "/v1/files",
                self._create_file,
                schema="openai_files_create",
                body="multipart",
            ),
            route("GET", "/v1/files/{file_id}", self._get_file, body="none"),
            route("DELETE", "/v1/files/{file_id}", self._delete_file, body="none"),
            route(
                "POST",
                "/v1/vector_stores",
                self._create_store,
                schema="openai_vector_stores_create",
            ),
            route("GET", "/v1/vector_stores/{vs}", self._get_store, body="none"),
            route("DELETE", "/v1/vector_stores/{vs}", self._delete_store, body="none"),
            route(
                "POST",
                "/v1/vector_stores/{vs}/files",
                self._attach,
                schema="openai_vector_store_files_create",
            ),
            route("GET", "/v1/vector_stores/{vs}/files", self._list_store_files, body="none"),
            route("GET", "/v1/vector_stores/{vs}/files/{file_id}", self._get_attached, body="none"),
            route("DELETE", "/v1/vector_stores/{vs}/files/{file_id}", self._detach, body="none"),
        ]

    def _not_found(self, kind: str, ident: str) -> Response:
        return self._error(404, f"No {kind} found with id '{ident}'.")

    async def _create_file(self, request: Request, fault: FaultRule | None) -> Response:
        form = request.form or {}
        part = request.files["file"]
        created = FakeFile(
            new_file_id(), part.filename, str(form["purpose"]), part.data, int(time.time())
        )
        self.files[created.id] = created
        self._changed()
        return json_response(200, created.to_json())

    async def _get_file(self, request: Request, fault: FaultRule | None) -> Response:
        found = self.files.get(request.params["file_id"])
        if found is None:
            return self._not_found("file", request.params["file_id"])
        return json_response(200, found.to_json())

    async def _delete_file(self, request: Request, fault: FaultRule | None) -> Response:
        file_id = request.params["file_id"]
        if self.files.pop(file_id, None) is None:
            return self._not_found("file", file_id)
        for store in self.stores.values():
            store.files.pop(file_id, None)
        self._changed()
        return json_response(200, {"id": file_id, "object": "file", "deleted": True})

    async def _create_store(self, request: Request, fault: FaultRule | None) -> Response:
        body: Mapping[str, Any] = request.json or {}
        store = FakeStore(
            f"vs_{secrets.token_hex(12)}",
            str(body.get("name") or ""),
            dict(body.get("metadata") or {}),
            int(time.time()),
        )
        for file_id in body.get("file_ids") or ():
            if file_id not in self.files:
                return self._not_found("file", file_id)
        self.stores[store.id] = store
        for file_id in body.get("file_ids") or ():
            store.files[file_id] = self._entry(file_id, None)
        self._changed()
        return json_response(200, self.store_json(store))

    async def _get_store(self, request: Request, fault: FaultRule | None) -> Response:
        store = self.stores.get(request.params["vs"])
        if store is None:
            return self._not_found("vector store", request.params["vs"])
        return json_response(200, self.store_json(store))

    async def _delete_store(self, request: Request, fault: FaultRule | None) -> Response:
        store_id = request.params["vs"]
        if self.stores.pop(store_id, None) is None:
            return self._not_found("vector store", store_id)
        self._changed()
        return json_response(
            200, {"id": store_id, "object": "vector_store.deleted", "deleted": True}
        )

    def _entry(self, file_id: str, attributes: dict[str, Any] | None) -> StoreFile:
        filename = self.files[file_id].filename
        failure = None
        if "." + filename.lower().rpartition(".")[2] not in SEARCHABLE:
            failure = ("unsupported_file", f"File type of {filename} is not supported.")
        elif self.fail_pattern is not None and self.fail_pattern.search(filename):
            failure = ("invalid_file", f"The file {filename} could not be parsed.")
        return StoreFile(
            file_id, int(time.time()), time.monotonic() + self.index_seconds, failure, attributes
        )

    async def _attach(self, request: Request, fault: FaultRule | None) -> Response:
        store = self.stores.get(request.params["vs"])
        if store is None:
            return self._not_found("vector store", request.params["vs"])
        file_id = request.json["file_id"]
        if file_id not in self.files:
            return self._not_found("file", file_id)
        entry = store.files.get(file_id)
        if entry is None:
            entry = store.files[file_id] = self._entry(file_id, request.json.get("attributes"))
            self._changed()
        return json_response(200, self.store_file_json(store, entry))

    async def _list_store_files(self, request: Request, fault: FaultRule | None) -> Response:
        store = self.stores.get(request.params["vs"])
        if store is None:
            return self._not_found("vector store", request.params["vs"])
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return self._error(400, "Invalid 'limit': expected an integer.", param="limit")
        if not 1 <= limit <= 100:
            return self._error(400, "Invalid 'limit': must be between 1 and 100.", param="limit")
        order = request.query.get("order", "desc")
        if order not in ("asc", "desc"):
            return self._error(400, f"Invalid value: '{order}'.", param="order")
        entries = sorted(
            store.files.values(), key=lambda e: (e.created_at, e.file_id), reverse=order == "desc"
        )
        wanted = request.query.get("filter")
        items = [self.store_file_json(store, e) for e in entries]
        if wanted:
            items = [i for i in items if i["status"] == wanted]
        after = request.query.get("after")
        if after:
            ids = [i["id"] for i in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        page = items[:limit]
        return json_response(
            200,
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            },
        )

    async def _get_attached(self, request: Request, fault: FaultRule | None) -> Response:
        store = self.stores.get(request.params["vs"])
        if store is None:
            return self._not_found("vector store", request.params["vs"])
        entry = store.files.get(request.params["file_id"])
        if entry is None:
            return self._not_found("vector store file", request.params["file_id"])
        return json_response(200, self.store_file_json(store, entry))

    async def _detach(self, request: Request, fault: FaultRule | None) -> Response:
        store = self.stores.get(request.params["vs"])
        if store is None:
            return self._not_found("vector store", request.params["vs"])
        file_id = request.params["file_id"]
        if store.files.pop(file_id, None) is None:
            return self._not_found("vector store file", file_id)
        self._changed()
        return json_response(
            200, {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}
        )
