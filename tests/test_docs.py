"""Documentation stays true: every hook documented and tested; the README's commands are what CI runs."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest

from cammimic import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if hasattr(f, "cammimic_spec"))


def signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def test_there_are_hooks():
    assert HOOKS == [
        "locate_attention_layers",
        "register_backbones",
        "register_eval_methods",
        "register_eval_metrics",
        "register_guidance_terms",
        "register_motion_estimators",
        "register_noise_initialisers",
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    text = (ROOT / "docs" / "plugins.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert any(signature(hook) in h for h in headings), (
        f"docs/plugins.md needs a heading with `{signature(hook)}`"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_tested(hook):
    tests = "".join(
        p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py"
    )
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


# --------------------------------------------------------------------------------------------
# Every fenced example runs (issue 8 §6): shell, console and Python blocks in README.md,
# adapters/README.md and docs/*.md run as written unless the line before the fence says
# `<!-- not-run: why -->` (they need weights, the network or a placeholder); a block after
# `<!-- file: PATH -->` must be that file verbatim. New examples are covered by default.
# --------------------------------------------------------------------------------------------

RUN_LANGS = ("bash", "sh", "shell", "console", "python")
DOC_FILES = [
    ROOT / "README.md",
    ROOT / "adapters" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
_FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```\n", re.M | re.S)


def _blocks():
    for doc in DOC_FILES:
        text = doc.read_text()
        for m in _FENCE.finditer(text):
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            line = text[: m.start()].count("\n") + 1
            body = textwrap.dedent(m.group(3)) if m.group(1) else m.group(3)
            yield doc, line, m.group(2), body, before


def _id(block):
    doc, line = block[0], block[1]
    return f"{doc.relative_to(ROOT)}:{line}"


BLOCKS = list(_blocks())
RUNNABLE = [
    b for b in BLOCKS if b[2] in RUN_LANGS and not b[4].startswith(("<!-- not-run:", "<!-- file:"))
]
FILE_BLOCKS = [b for b in BLOCKS if b[4].startswith("<!-- file:")]


def test_examples_are_found_and_skips_say_why():
    assert len(RUNNABLE) >= 10 and len(FILE_BLOCKS) >= 4
    for doc, line, _lang, _, before in BLOCKS:
        if before.startswith("<!-- not-run:"):
            assert len(before) > len("<!-- not-run:  -->") + 3, (
                f"{doc.name}:{line} says not-run without why"
            )


@pytest.mark.parametrize("block", FILE_BLOCKS, ids=_id)
def test_tutorial_code_is_the_tested_example_package(block):
    doc, line, _, body, before = block
    path = ROOT / re.fullmatch(r"<!-- file: (.+) -->", before).group(1)
    assert body == path.read_text(), (
        f"{doc.name}:{line} differs from {path}; copy the file into the page"
    )


@pytest.fixture(scope="module")
def docs_run1(tmp_path_factory):
    """out/run1 as docs/cli.md makes it, for the examples that read it."""
    cwd = tmp_path_factory.mktemp("docs-run1")
    (cwd / "examples").symlink_to(ROOT / "examples")
    out = _sh(
        "cammimic run examples/reference.mp4 examples/scene.jpg --method homography -o out/run1",
        cwd,
    )
    assert out.returncode == 0, out.stderr
    return cwd / "out" / "run1"


def _env():
    import os
    import sys

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CAMMIMIC_LOAD_PLUGINS", None)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _run(args, cwd, timeout=300):
    """Run an example in its own process group with its own HOME: a timeout ends every process it
    started (not only the shell), and nothing it writes under ``~`` touches the real home."""
    import os
    import signal
    import subprocess

    env = _env()
    # matplotlib keeps its font cache under HOME: keep the real one (a fresh cache costs seconds)
    env.setdefault("MPLCONFIGDIR", str(Path("~/.config/matplotlib").expanduser()))
    env["HOME"] = str(Path(cwd) / "home")
    Path(env["HOME"]).mkdir(exist_ok=True)
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _sh(command, cwd):
    return _run(["bash", "-e", "-o", "pipefail", "-c", command], cwd)


def _normal(text: str) -> list[str]:
    """Lines with numbers and the temporary folder blurred, trailing spaces dropped."""
    return [
        re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "N", ln).rstrip()
        for ln in text.splitlines()
        if ln.strip()
    ]


@pytest.mark.parametrize("block", RUNNABLE, ids=_id)
def test_every_fenced_example_runs(block, docs_run1, tmp_path):
    import shutil
    import sys

    doc, line, lang, body, _ = block
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    if "-o out/run1" not in body:
        shutil.copytree(docs_run1, tmp_path / "out" / "run1")
    for other in BLOCKS:  # config files the page defines (a toml block starting "# NAME.toml")
        m = re.match(r"# ([\w.-]+\.toml)\b", other[3])
        if other[0] == doc and other[2] == "toml" and m:
            (tmp_path / m.group(1)).write_text(other[3])
    where = f"{doc.relative_to(ROOT)}:{line}"
    if lang == "python":
        (tmp_path / "example.py").write_text(body)
        out = _run([sys.executable, "example.py"], tmp_path)
        assert out.returncode == 0, f"{where}: {out.stderr[-2000:]}"
        return
    if lang != "console":
        out = _sh(body, tmp_path)
        assert out.returncode == 0, f"{where}: {out.stderr[-2000:]}"
        return
    # console: "$ command" lines, each followed by its expected output
    steps = re.split(r"^\$ ", body, flags=re.M)[1:]
    for step in steps:
        command, _, expected = step.partition("\n")
        out = _sh(command, tmp_path)
        actual = out.stdout + out.stderr
        want_error = expected.lstrip().startswith("Error:")
        assert (out.returncode != 0) == want_error, (
            f"{where}: `{command}` exit {out.returncode}: {actual[-2000:]}"
        )
        want, got = _normal(expected), _normal(actual)
        if not want:  # no output shown: only the exit status is promised
            continue
        if "..." in want:  # elided lines: the rest must appear in order
            it = iter(got)
            missing = [w for w in want if w != "..." and not any(w == g for g in it)]
            assert not missing, f"{where}: `{command}` printed no {missing[0]!r}:\n{actual}"
        else:
            assert want == got, f"{where}: `{command}` printed:\n{actual}"


def test_backbone_parameters_in_method_md_are_the_factorys():
    import inspect as _inspect

    from cammimic_unet3d import backbone_factory

    text = " ".join((ROOT / "docs" / "method.md").read_text().split())
    documented = text[text.index("`[backbone]` parameters") :][:900]
    factory = backbone_factory("x", default_weights="w", default_size=(8, 8), default_num_frames=2)
    for name in _inspect.signature(factory).parameters:
        assert f"`{name}`" in documented, (
            f"docs/method.md does not list [backbone] parameter {name}"
        )
