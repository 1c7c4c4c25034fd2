"""The settings table of docs/configuration.md is generated from ``shared.settings.Settings``.

The rows between the two marker comments in docs/configuration.md must be exactly what
``settings_table()`` renders from ``Settings.model_fields`` (environment variable, default,
description). To regenerate them after changing the settings::

    python -m tests.unit.test_settings_doc            # print the table
    python -m tests.unit.test_settings_doc --write    # rewrite it in docs/configuration.md
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from shared.settings import Settings

README = Path(__file__).parents[2] / "docs" / "configuration.md"
START = "<!-- settings-table:start (generated: python -m tests.unit.test_settings_doc --write) -->"
END = "<!-- settings-table:end -->"
HEADER = ["| variable | default | meaning |", "|---|---|---|"]


def env_names(name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set a field, as pydantic-settings reads them.

    A field with a ``validation_alias`` is read from the alias(es) only, without the prefix;
    every other field from ``env_prefix`` + its name. Case does not matter (upper by custom).
    """
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(path[0]).upper() for path in alias.convert_to_aliases()]
    if isinstance(alias, str):
        return [alias.upper()]
    return [(Settings.model_config.get("env_prefix", "") + name).upper()]


def _value(v: Any) -> Any:
    """A default as the JSON value one would put in the environment."""
    if isinstance(v, Enum):
        return _value(v.value)
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, (tuple, list)):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    return v


def render_default(field: FieldInfo) -> str:
    """Readable, deterministic: unset for None and for secrets, JSON for tuples and dicts."""
    if field.default is not PydanticUndefined:
        default = field.default
    elif field.default_factory is not None:
        default = field.default_factory()  # type: ignore[call-arg]
    else:
        return "required"
    if default is None:
        return "unset"
    if isinstance(default, SecretStr):  # never print a secret value
        return "unset" if not default.get_secret_value() else "set (secret)"
    v = _value(default)
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, (list, dict)):
        text = json.dumps(v, separators=(", ", ": "))
    else:
        text = str(v)
    if text == "":
        text = '""'
    return f"`{text}`"


def _cell(text: str) -> str:
    """One table cell of prose: markdown's active characters escaped (10**-x is not bold)."""
    text = " ".join(text.split())
    for raw, escaped in (("\\", "\\\\"), ("|", "\\|"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(raw, escaped)
    return text


def settings_rows() -> list[str]:
    """One markdown row per setting, in the order ``Settings`` declares them."""
    rows = []
    for name, field in Settings.model_fields.items():
        names = " or ".join(f"`{n}`" for n in env_names(name, field))
        rows.append(f"| {names} | {render_default(field)} | {_cell(field.description or '')} |")
    return rows


def settings_table() -> str:
    return "\n".join([START, *HEADER, *settings_rows(), END])


def readme_rows(text: str) -> list[str]:
    """The rows between the markers (header lines excluded)."""
    assert START in text and END in text, f"docs/configuration.md has no settings table between {START} / {END}"
    body = text.split(START, 1)[1].split(END, 1)[0]
    return [ln.strip() for ln in body.strip().splitlines() if ln.strip() not in HEADER]


def _first_cell(row: str) -> str:
    return row.split(" | ", 1)[0]


def table_differences(actual: list[str], expected: list[str]) -> list[str]:
    """Human-readable differences between the README's rows and the generated ones."""
    problems = []
    got = {_first_cell(r): r for r in actual}
    want = {_first_cell(r): r for r in expected}
    for key, row in want.items():
        if key not in got:
            problems.append(f"missing: {row}")
        elif got[key] != row:
            problems.append(f"differs:\n   README: {got[key]}\n   wanted: {row}")
    problems += [f"not a setting: {row}" for key, row in got.items() if key not in want]
    if not problems and actual != expected:
        problems.append("same rows, different order (or duplicates): regenerate the table")
    return problems


def write_readme() -> bool:
    """Replace the table in docs/configuration.md; True if it changed."""
    text = README.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new = head + settings_table() + tail
    if new != text:
        README.write_text(new)
    return new != text


def test_the_readme_settings_table_matches_settings() -> None:
    problems = table_differences(readme_rows(README.read_text()), settings_rows())
    assert not problems, (
        "docs/configuration.md's settings table differs from shared/settings.py "
        "(regenerate: python -m tests.unit.test_settings_doc --write):\n" + "\n".join(problems)
    )


def test_secrets_are_never_rendered() -> None:
    for name, field in Settings.model_fields.items():
        if field.annotation is not None and "SecretStr" in str(field.annotation):
            assert render_default(field) in ("unset", "set (secret)"), name


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        print("docs/configuration.md updated" if write_readme() else "docs/configuration.md already up to date")
    else:
        print(settings_table())
