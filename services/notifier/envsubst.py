"""``${VAR}`` references in configuration values, filled from the environment. Pure.

The routing file can then live in a ConfigMap or in git while PagerDuty routing keys, Slack
webhook URLs and HMAC secrets come from a Secret: ``routing_key: ${PD_ROUTING_KEY}``.
``${VAR:-default}`` has a default; ``$${`` is a literal ``${``. Only string values are
expanded (not keys), and an error names the variable and where it is used, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UnsetVariable(ValueError):
    def __init__(self, where: str, name: str) -> None:
        super().__init__(f"{where}: environment variable {name} is not set")
        self.where, self.name = where, name


def expand(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """``value`` with every ``${VAR}`` in its strings replaced from ``env``."""
    if isinstance(value, str):
        if "$" not in value:
            return value

        def fill(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise UnsetVariable(where or "<root>", name)

        return _REF.sub(fill, value)
    if isinstance(value, dict):
        return {k: expand(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env, f"{where}.{i}" if where else str(i)) for i, v in enumerate(value)]
    return value
