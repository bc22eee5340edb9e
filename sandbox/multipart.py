"""A small multipart/form-data parser for the fakes (the OpenAI transcription upload)."""

from __future__ import annotations

import re
from typing import Any

import attrs

_PARAM = re.compile(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))')


@attrs.define
class FilePart:
    """An uploaded file: field name, filename, content type and bytes."""

    name: str
    filename: str
    content_type: str
    data: bytes


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``'form-data; name="x"; filename="y"'`` into the main value and its params."""
    main, _, _rest = value.partition(";")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _PARAM.finditer(value)
    }
    return main.strip().lower(), params


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, Any], dict[str, FilePart]]:
    """Parse a multipart body into text fields (repeated names become lists) and file parts."""
    kind, params = header_params(content_type)
    if kind != "multipart/form-data":
        raise ValueError(f"expected multipart/form-data, got {kind or 'no content type'}")
    boundary = params.get("boundary")
    if not boundary:
        raise ValueError("multipart content type without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise ValueError("multipart body is not terminated by the closing boundary")
    fields: dict[str, Any] = {}
    files: dict[str, FilePart] = {}
    for section in sections[1:-1]:
        if section.startswith(b"\r\n"):
            section = section[2:]
        if section.endswith(b"\r\n"):
            section = section[:-2]
        raw_headers, sep, data = section.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without a header/body separator")
        headers: dict[str, str] = {}
        for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition, dparams = header_params(headers.get("content-disposition", ""))
        if disposition != "form-data" or "name" not in dparams:
            raise ValueError("multipart part without a form-data name")
        name = dparams["name"]
        if "filename" in dparams:
            files[name] = FilePart(
                name=name,
                filename=dparams["filename"],
                content_type=headers.get("content-type", "application/octet-stream"),
                data=data,
            )
            continue
        text = data.decode("utf-8")
        if name in fields:
            existing = fields[name]
            fields[name] = [*existing, text] if isinstance(existing, list) else [existing, text]
        else:
            fields[name] = text
    return fields, files
