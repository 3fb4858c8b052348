"""Every documented example runs: module docstrings (doctest) and the `>>>` examples in docs/."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import tongbao

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(tongbao.__path__, "tongbao.") if m.name != "tongbao._core"
)
DOCS = sorted(
    p for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")] if ">>>" in p.read_text()
)


@pytest.mark.parametrize("name", ["tongbao", *MODULES])
def test_module_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_api_is_documented() -> None:
    undocumented = [
        name
        for name in tongbao.__all__
        if callable(getattr(tongbao, name)) and not (getattr(tongbao, name).__doc__ or "").strip()
    ]
    assert undocumented == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_examples(path: Path) -> None:
    result = doctest.testfile(str(path), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
