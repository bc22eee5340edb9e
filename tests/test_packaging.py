"""Every product package is declared in pyproject.toml, so a built wheel holds all the code.

An editable install finds subpackages on disk whether or not they are declared; a wheel holds
only the declared ones, so a forgotten subpackage passes every test here and fails in
production with an ImportError.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("actors", "gateway", "store", "sandbox")


def test_every_product_package_is_declared() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in PRODUCT
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk <= declared, f"not in pyproject.toml's packages: {sorted(on_disk - declared)}"
