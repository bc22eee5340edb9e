"""Every module of the product packages imports (catches errors no test path reaches)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ("actors", "gateway", "store", "sandbox")
# gateway.asgi builds the app from the environment at import, sandbox.__main__ runs a server:
# both are exercised as processes.
SKIP = {"gateway.asgi", "sandbox.__main__"}


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if info.name not in SKIP:
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
