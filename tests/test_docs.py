"""Documentation stays true: every hook documented and tested; the README's commands are what CI runs."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from cammimic import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if hasattr(f, "cammimic_spec"))


def signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def test_there_are_hooks():
    assert HOOKS == ["locate_attention_layers", "register_backbones", "register_eval_methods",
                     "register_eval_metrics", "register_guidance_terms", "register_motion_estimators"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    text = (ROOT / "docs" / "plugins.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert any(signature(hook) in h for h in headings), f"docs/plugins.md needs a heading with `{signature(hook)}`"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_tested(hook):
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py")
    assert re.search(rf"def {hook}\(", tests), f"no test implements the {hook} hook"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "pip install nox && nox -s demo" in readme
    assert "pip install nox && nox -s tests" in readme
    assert "pip install nox && nox -s tests" in (ROOT / ".ci" / "run").read_text()


def test_documented_config_keys_exist():
    from cammimic.config import COMPONENT_DEFAULTS, DEFAULTS

    text = (ROOT / "docs" / "config.md").read_text()
    for section, keys in DEFAULTS.items():
        assert f"[{section}]" in text, section
        for key in keys:
            assert re.search(rf"\b{key}\b", text), f"[{section}] {key} undocumented"
    for section in COMPONENT_DEFAULTS:
        assert section in text
