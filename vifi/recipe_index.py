"""The shipped recipes at a glance: name, the protocol each serves, and its one-line description.

The description is the recipe file's first comment line, so a recipe documents itself in one place.
"""

from __future__ import annotations

import re
from importlib import resources

# Which protocol a recipe trains for, read from its name (the names follow one scheme: see docs/ecosystem.md).
_PROTOCOL_BY_PREFIX = (("k400-supervised", "supervised"), ("prompt-b2n", "base2novel"), ("b2n", "base2novel"),
                       ("prompt-fewshot", "fewshot"), ("fewshot", "fewshot"), ("k400", "zeroshot"), ("demo", "demo"))


def recipe_protocol(name: str) -> str:
    for prefix, protocol in _PROTOCOL_BY_PREFIX:
        if name == prefix or name.startswith(prefix + "-"):
            return protocol
    return "custom"


def recipe_description(text: str) -> str:
    """First comment line, without references to the paper's internal spec sections."""
    first = next((line for line in text.splitlines() if line.startswith("#")), "#")
    line = first.lstrip("#").strip()
    line = re.sub(r"\s*\(SPEC [^)]*\)", "", line)  # "(SPEC §4.1, §1.5)"
    line = re.sub(r"SPEC §[\d.]+(, §[\d.]+)*;?\s*", "", line).replace("( ", "(").replace("()", "")
    return line.strip()


def list_recipes() -> list[dict[str, str]]:
    from vifi.config import recipe_names

    folder = resources.files("vifi") / "recipes"
    return [{"name": name, "protocol": recipe_protocol(name),
             "description": recipe_description((folder / f"{name}.yaml").read_text(encoding="utf-8"))}
            for name in recipe_names()]
