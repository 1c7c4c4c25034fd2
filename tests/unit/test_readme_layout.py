"""The README's layout section names every module of the tree, so a reader can trust it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("shared", "services", "livetriage", "bench")


def layout_text() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's layout section has no code block"
    return block.group(1)


def test_the_readme_layout_names_every_module() -> None:
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", layout_text()))
    missing = sorted(
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if p.name != "__init__.py" and "migrations" not in p.parts and p.stem not in words
    )
    assert not missing, f"modules the README's layout does not name: {missing}"


def test_the_readme_layout_names_no_module_that_is_gone() -> None:
    stems = {p.stem for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    named = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\.py", layout_text()))
    assert not named - stems, f"the README's layout names modules that do not exist: {sorted(named - stems)}"
