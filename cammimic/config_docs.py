"""docs/config.md's tables of settings and command-line overrides, generated from the config schema.

The tables sit between ``<!-- generated: NAME -->`` and ``<!-- end generated -->`` markers (NAME is
a plain section such as ``[run]``, or ``overrides``); the prose around them is written by hand::

    python -m cammimic.config_docs docs/config.md           # rewrite the tables
    python -m cammimic.config_docs --check docs/config.md   # exit 1 if they disagree with the schema

``tests/test_config.py`` runs the check, so the docs cannot drift from the code.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cammimic import config as schema

__all__ = ["section_table", "overrides_table", "render", "main"]

_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)

#: Options that change the [[guidance]] list rather than one setting (cammimic.cli._method_config).
GUIDANCE_ROWS = (
    ("`--guidance-weight`", "`weight` of every `homography` entry of `[[guidance]]`"),
    ("`--no-guidance`", '`[[guidance]]` becomes one `name = "none"` (the "no HG" ablation)'),
)


def _number(value) -> str:
    text = f"{value:g}" if isinstance(value, float) and not value.is_integer() else str(int(value))
    return text.replace("-", "−")


def _default(value) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    if isinstance(value, float):
        return f"`{value!r}`"
    return f"`{value}`"


def _accepts(field) -> str:
    meta = field.metadata
    if meta["accepts"]:
        return meta["accepts"]
    if meta["choices"]:
        return ", ".join(f'`"{c}"`' for c in meta["choices"])
    if meta["range"]:
        lo, hi = meta["range"]
        return f"≥ {_number(lo)}" if hi >= 1e6 else f"{_number(lo)}–{_number(hi)}"
    return {bool: "`true`/`false`", str: "string"}[type(field.default)]


def section_table(section: str) -> str:
    """The Markdown table of a plain section: key, default, what it accepts, meaning."""
    rows = ["| Key | Default | Accepts | Meaning |", "|---|---|---|---|"]
    for field in schema.fields(section):
        default = schema.DEFAULTS[section][field.name]
        rows.append(
            f"| `{field.name}` | {_default(default)} | {_accepts(field)} | {field.metadata['help']} |"
        )
    return "\n".join(rows) + "\n"


def overrides_table() -> str:
    """Every option that overrides a setting, the setting, and the commands that have it."""
    from cammimic import cli

    commands: dict[str, list[str]] = {}
    for name, command in sorted(cli.cli.commands.items()):
        for param in command.params:
            if getattr(param, "setting", None):
                commands.setdefault(param.setting, []).append(name)
    rows = ["| Option | Setting | Commands |", "|---|---|---|"]
    for dotted, opt in cli.SETTING_OPTIONS.values():
        target = f"`{dotted}`" if opt.sets is None else f"`{dotted} = {str(opt.sets).lower()}`"
        rows.append(
            f"| `{opt.flag}` | {target} | {', '.join(f'`{c}`' for c in commands.get(dotted, []))} |"
        )
    for option, meaning in GUIDANCE_ROWS:
        rows.append(f"| {option} | {meaning} | `run`, `sample` |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    """``text`` with every generated block replaced by what the schema says now."""

    def block(match: re.Match) -> str:
        name = match["name"]
        if name == "overrides":
            body = overrides_table()
        elif name.startswith("[") and name[1:-1] in schema.SECTIONS:
            body = section_table(name[1:-1])
        else:
            raise ValueError(f"unknown generated block {name!r}")
        return match.group(1) + body + match.group(4)

    return _BLOCK.sub(block, text)


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"] or ["docs/config.md"]
    stale = []
    for path in map(Path, paths):
        text = path.read_text(encoding="utf-8")
        new = render(text)
        if new == text:
            continue
        if check:
            stale.append(str(path))
        else:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(
            f"{', '.join(stale)} disagree(s) with the config schema; run python -m cammimic.config_docs {' '.join(stale)}"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
