"""Plumbing shared by the sandbox fakes: a hand-written ASGI app served by hypercorn on trio.

`FakeServer` owns what the fakes have in common: bounded call recording, bearer auth, request
body (and query) validation against the JSON Schemas in ``sandbox/schemas/``, fault injection, the
``/__fake__/`` control API, and ``serve()`` (binds port 0 by default and reports the real base
URL through ``task_status``). Subclasses supply the routes and the vendor's error shape.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from importlib import resources
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import parse_qsl

import attrs
import hypercorn.config
import hypercorn.trio
import jsonschema
import referencing
import trio

from sandbox.faults import DROP_HOLD_SECONDS, FaultRule, Faults
from sandbox.multipart import FilePart, parse_multipart

JSON_CONTENT_TYPE = "application/json"
CONTROL_PREFIX = "/__fake__/"
MAX_BODY_BYTES = 64 * 1024 * 1024
#: The fakes' listen queue (the kernel caps it at ``net.core.somaxconn``).
LISTEN_BACKLOG = 4096

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(OrderedDict[K, V], Generic[K, V]):
    """An insertion-ordered dict that drops its oldest entries past `maxsize`."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        while len(self) > self.maxsize:
            self.popitem(last=False)


@attrs.define
class Call:
    """One request a fake received, as recorded for assertions."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    form: dict[str, Any] | None = None
    status: int = 0
    valid: bool = True
    error: str | None = None
    at: float = 0.0
    #: Seconds of latency the fake added on purpose (``sandbox.realism``), 0 when none.
    injected_latency: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (for the control API)."""
        return attrs.asdict(self)


@attrs.define
class Request:
    """An HTTP request as the fakes' handlers see it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = attrs.field(factory=dict)
    json: Any = None
    form: dict[str, Any] | None = None
    files: dict[str, FilePart] = attrs.field(factory=dict)
    #: The recorded call of this request (set by `FakeServer.handle`).
    call: Call | None = None


@attrs.define
class Response:
    """An HTTP response; `drop=True` means: send nothing (see `sandbox.faults`)."""

    status: int = 200
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = attrs.field(factory=dict)
    drop: bool = False
    #: Work to start in the fake's nursery once the response went out (e.g. an echo webhook).
    background: Callable[[], Awaitable[None]] | None = None


def json_response(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(
        status=status,
        body=json.dumps(obj, ensure_ascii=False).encode(),
        headers=dict(headers or {}),
    )


Handler = Callable[[Request, FaultRule | None], Awaitable[Response]]


@attrs.define(frozen=True)
class Route:
    """A route: method, path regex with named groups, handler, body schema and flags."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    schema: str | None = None
    auth: bool = True
    body: str = "json"  # "json", "multipart" or "none"
    fault_aware: bool = False  # the handler applies its fault itself (see FakeServer.pre_fault)
    query_schema: str | None = None  # the schema of the query parameters (all strings)


def route(
    method: str,
    path: str,
    handler: Handler,
    *,
    schema: str | None = None,
    auth: bool = True,
    body: str = "json",
    fault_aware: bool = False,
    query_schema: str | None = None,
) -> Route:
    """Build a `Route`; ``{name}`` in `path` matches one path segment (or ``{name:.+}``)."""

    def group(match: re.Match[str]) -> str:
        name, _, regex = match.group(1).partition(":")
        return f"(?P<{name}>{regex or '[^/]+'})"

    regex = "^" + re.sub(r"\{([^}]+)\}", group, path) + "$"
    return Route(method, re.compile(regex), handler, schema, auth, body, fault_aware, query_schema)


@attrs.define
class ValidationFailure:
    """Why a body failed its schema: a message, the offending parameter path, a kind."""

    message: str
    param: str | None
    kind: str  # "missing", "unknown", "type", "value"


def load_validators(names: tuple[str, ...]) -> dict[str, jsonschema.protocols.Validator]:
    """Compile ``sandbox/schemas/<name>.json`` for each name (shared files resolve by ``$id``)."""
    folder = resources.files("sandbox") / "schemas"
    documents: dict[str, Any] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            documents[entry.name[: -len(".json")]] = json.loads(entry.read_text(encoding="utf-8"))
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (doc["$id"], referencing.Resource.from_contents(doc))
        for doc in documents.values()
        if "$id" in doc
    )
    validators: dict[str, jsonschema.protocols.Validator] = {}
    for name in names:
        schema = documents[name]
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validators[name] = cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)
    return validators


def _param_path(path: Any) -> str | None:
    parts: list[str] = []
    for item in path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or None


def validate_body(validator: jsonschema.protocols.Validator, data: Any) -> ValidationFailure | None:
    """Validate `data`; describe the most relevant error, vendor style, or return None."""
    if validator.is_valid(data):
        return None
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return None
    # Descend into if/then and anyOf branches to the most specific cause.
    while error.context:
        error = jsonschema.exceptions.best_match(error.context)
    param = _param_path(error.absolute_path)
    if error.validator == "required":
        match = re.match(r"'([^']+)' is a required property", error.message)
        missing = match.group(1) if match else error.message
        full = f"{param}.{missing}" if param else missing
        return ValidationFailure(f"Missing required parameter: '{full}'.", full, "missing")
    if error.validator == "additionalProperties":
        match = re.search(r"\('([^']+)'", error.message)
        extra = match.group(1) if match else error.message
        full = f"{param}.{extra}" if param else extra
        return ValidationFailure(f"Unknown parameter: '{full}'.", full, "unknown")
    if error.validator == "type":
        return ValidationFailure(f"Invalid type for '{param}': {error.message}.", param, "type")
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return ValidationFailure(
            f"Invalid value: {error.instance!r}. Supported values are: {allowed}.",
            param,
            "value",
        )
    return ValidationFailure(f"Invalid '{param or 'body'}': {error.message}.", param, "value")


class FakeServer:
    """Base class of `FakeWhapi` and `FakeOpenAI` (recording, auth, faults, control, serve)."""

    SCHEMAS: ClassVar[tuple[str, ...]] = ()
    URL_SUFFIX: ClassVar[str] = ""

    def __init__(self, token: str, *, faults: Faults | None, max_calls: int) -> None:
        self.token = token
        self.faults = faults if faults is not None else Faults()
        self.max_calls = max_calls
        self._calls: deque[Call] = deque(maxlen=max_calls)
        self._validators = load_validators(self.SCHEMAS)
        self._routes: list[Route] = self.routes()
        self.url: str | None = None
        self.base_url: str | None = None
        self.drop_hold_seconds = DROP_HOLD_SECONDS
        self._nursery: trio.Nursery | None = None

    # ----------------------------------------------------------------- for subclasses
    def routes(self) -> list[Route]:
        """The vendor routes of this fake."""
        raise NotImplementedError

    def error_response(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A response in the vendor's error shape."""
        raise NotImplementedError

    def validation_error(self, failure: ValidationFailure) -> Response:
        """The 400 answer for a body that failed its schema."""
        return self.error_response(400, failure.message, param=failure.param)

    async def control(self, request: Request) -> Response | None:
        """Extra control endpoints of a subclass (None: not handled)."""
        return None

    def reset(self) -> None:
        """Forget faults and recorded calls (``POST /__fake__/reset``)."""
        self.faults.clear()
        self.clear_calls()

    async def websocket(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        """A websocket connection (ASGI); refused (403) unless a subclass serves it."""
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.close"})

    async def started(self, nursery: trio.Nursery) -> None:
        """Hook run once serving (e.g. to open clients, start helper tasks)."""

    async def stopping(self) -> None:
        """Hook run when serve() ends."""

    # ----------------------------------------------------------------- recording
    @property
    def calls(self) -> list[Call]:
        """Recorded calls, oldest first (at most `max_calls`)."""
        return list(self._calls)

    @property
    def invalid_calls(self) -> list[Call]:
        """Recorded calls that failed body validation."""
        return [call for call in self._calls if not call.valid]

    def clear_calls(self) -> None:
        """Forget the recorded calls."""
        self._calls.clear()

    def calls_to(self, path_regex: str, method: str | None = None) -> list[Call]:
        """Recorded calls whose path matches `path_regex` (and method, if given)."""
        pattern = re.compile(path_regex)
        return [
            c
            for c in self._calls
            if pattern.search(c.path) and (method is None or c.method == method.upper())
        ]

    # ----------------------------------------------------------------- faults
    async def pre_fault(self, fault: FaultRule | None) -> Response | None:
        """Apply a rule's effect before processing: delay, then maybe the fault's answer."""
        if fault is None or fault.after_processing:
            return None
        if fault.delay:
            await trio.sleep(fault.delay)
        return self.fault_response(fault) if fault.is_error else None

    async def post_fault(self, fault: FaultRule | None, real: Response) -> Response:
        """Apply an ``after_processing`` rule once the real effect happened."""
        if fault is None or not fault.after_processing:
            return real
        if fault.delay:
            await trio.sleep(fault.delay)
        if not fault.is_error:
            return real
        failed = self.fault_response(fault)
        failed.background = real.background
        return failed

    def fault_response(self, fault: FaultRule) -> Response:
        """The answer a fault rule gives (a drop, a custom body or the vendor error shape)."""
        if fault.drop:
            return Response(status=0, drop=True)
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            value = fault.retry_after
            headers["retry-after"] = str(int(value)) if float(value).is_integer() else str(value)
        if fault.body is not None:
            return json_response(fault.status, fault.body, headers)
        return self.error_response(
            fault.status,
            f"Injected fault: HTTP {fault.status}",
            code="injected_fault",
            headers=headers,
        )

    # ----------------------------------------------------------------- control API
    async def _control(self, request: Request) -> Response:
        name = request.path[len(CONTROL_PREFIX) :]
        if request.method == "GET" and name == "calls":
            calls = self._calls
            pattern = request.query.get("path")
            if pattern:
                calls = deque(c for c in calls if re.search(pattern, c.path))
            return json_response(200, {"calls": [c.to_json() for c in calls]})
        if request.method == "POST" and name == "faults":
            try:
                rule = self.faults.add_from_json(json.loads(request.body or b"{}"))
            except (ValueError, TypeError, re.error) as exc:
                return json_response(400, {"error": str(exc)})
            return json_response(200, {"ok": True, "rule": rule.to_json()})
        if request.method == "GET" and name == "faults":
            return json_response(200, {"faults": [r.to_json() for r in self.faults.rules]})
        if request.method == "POST" and name == "reset":
            self.reset()
            return json_response(200, {"ok": True})
        handled = await self.control(request)
        if handled is not None:
            return handled
        return json_response(404, {"error": f"unknown control endpoint {request.path}"})

    # ----------------------------------------------------------------- request handling
    def _authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("authorization", "") == f"Bearer {self.token}"

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        path_known = False
        for candidate in self._routes:
            match = candidate.pattern.match(path)
            if match is None:
                continue
            path_known = True
            if candidate.method == method:
                return candidate, match.groupdict(), True
        return None, {}, path_known

    def _parse_body(self, request: Request, kind: str) -> str | None:
        """Fill request.json / request.form; return an error message when unparsable."""
        if kind == "json":
            if not request.body.strip():
                request.json = None
                return None
            try:
                request.json = json.loads(request.body)
            except (ValueError, UnicodeDecodeError) as exc:
                return f"We could not parse the JSON body of your request: {exc}"
            return None
        if kind == "multipart":
            ctype = request.headers.get("content-type", "")
            try:
                fields, files = parse_multipart(request.body, ctype)
            except ValueError as exc:
                return f"Could not parse multipart form: {exc}"
            form: dict[str, Any] = dict(fields)
            for name, part in files.items():
                form[name] = {
                    "filename": part.filename,
                    "content_type": part.content_type,
                    "size": len(part.data),
                }
            request.form = form
            request.files = files
            return None
        return None

    async def handle(self, request: Request) -> Response:
        """Handle one vendor request: record, auth, parse, validate, fault, dispatch."""
        call = Call(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            at=trio.current_time(),
        )
        self._calls.append(call)
        request.call = call
        response = await self._handle_recorded(request, call)
        call.status = response.status
        return response

    async def _handle_recorded(self, request: Request, call: Call) -> Response:
        matched, params, path_known = self._match(request.method, request.path)
        if matched is None:
            call.valid = False
            if path_known:
                call.error = "method not allowed"
                return self.error_response(405, f"Method {request.method} not allowed")
            call.error = "unknown path"
            return self.error_response(404, f"Unknown path {request.path}")
        request.params = params
        if matched.auth and not self._authorized(request.headers):
            call.valid = False
            call.error = "unauthorized"
            return self.unauthorized()
        parse_error = self._parse_body(request, matched.body)
        call.json = request.json
        call.form = request.form
        if parse_error is not None:
            call.valid = False
            call.error = parse_error
            return self.error_response(400, parse_error)
        if matched.schema is not None:
            data = request.form if matched.body == "multipart" else request.json
            failure = validate_body(self._validators[matched.schema], data)
            if failure is not None:
                call.valid = False
                call.error = failure.message
                return self.validation_error(failure)
        if matched.query_schema is not None:
            failure = validate_body(self._validators[matched.query_schema], request.query)
            if failure is not None:
                call.valid = False
                call.error = failure.message
                return self.validation_error(failure)
        fault = self.faults.take(request.method, request.path)
        if matched.fault_aware:
            return await matched.handler(request, fault)
        early = await self.pre_fault(fault)
        if early is not None:
            return early
        real = await matched.handler(request, fault)
        return await self.post_fault(fault, real)

    def unauthorized(self) -> Response:
        """The 401 answer."""
        return self.error_response(401, "Unauthorized: missing or invalid bearer token")

    # ----------------------------------------------------------------- ASGI
    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await self._send(send, self.error_response(413, "Request body too large"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        request = Request(
            method=scope["method"].upper(),
            path=scope["path"],
            query=query,
            headers=headers,
            body=b"".join(chunks),
        )
        if request.path.startswith(CONTROL_PREFIX):
            response = await self._control(request)
        else:
            response = await self.handle(request)
        if response.drop:
            self._start_background(response)
            with trio.move_on_after(self.drop_hold_seconds):
                while (await receive())["type"] != "http.disconnect":
                    pass
            return
        await self._send(send, response)
        self._start_background(response)

    def _start_background(self, response: Response) -> None:
        if response.background is not None and self._nursery is not None:
            self._nursery.start_soon(response.background)

    @staticmethod
    async def _send(
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]], response: Response
    ) -> None:
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
        ]
        headers.extend((k.encode(), v.encode()) for k, v in response.headers.items())
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    # ----------------------------------------------------------------- serving
    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; report the base URL through `task_status`."""
        config = hypercorn.config.Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        config.loglevel = "WARNING"
        config.graceful_timeout = 0.5
        config.keep_alive_timeout = 30
        # A client opening thousands of connections at once (a bot with thousands of turns in
        # flight) must not overflow the listen queue: hypercorn's default of 100 made the
        # kernel drop SYNs, each retried a second or more later, time counted as the client's.
        config.backlog = LISTEN_BACKLOG
        try:
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(
                    lambda task_status: hypercorn.trio.serve(
                        self,
                        config,
                        task_status=task_status,  # type: ignore[arg-type]
                    )
                )
                self.base_url = str(binds[0]).rstrip("/")
                self.url = self.base_url + self.URL_SUFFIX
                self._nursery = nursery
                await self.started(nursery)
                task_status.started(self.url)
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self.stopping()
