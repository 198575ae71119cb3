"""cammimic.errors.one_line: the one way an exception becomes part of a one-line message."""

from __future__ import annotations

import pytest

from cammimic.errors import ONE_LINE_LIMIT, CammimicError, one_line


def test_one_line_names_the_type_and_collapses_whitespace():
    assert one_line(ValueError("bad\n\n   value\t here")) == "ValueError: bad value here"
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"  # no message: the type alone
    assert one_line(SystemExit(0)) == "SystemExit: 0"


def test_one_line_keeps_a_cammimic_error_and_a_bare_message_alone():
    assert one_line(CammimicError("video x.mp4 does not exist; check the path")) == (
        "video x.mp4 does not exist; check the path"
    )
    assert one_line(OSError("shorter than its header"), name=False) == "shorter than its header"


@pytest.mark.parametrize("limit", [ONE_LINE_LIMIT, 80])
def test_one_line_cuts_long_messages(limit):
    text = one_line(RuntimeError("x" * 1000), limit=limit)
    assert text == "RuntimeError: " + "x" * limit + "…"
    assert (
        len(one_line(RuntimeError("y" * limit), limit=limit)) == len("RuntimeError: ") + limit
    )  # not cut


def test_the_other_modules_use_it():
    """No module keeps a copy of its own (plugins, lora files and eval once had three)."""
    import cammimic.eval
    import cammimic.lora.files
    import cammimic.plugins

    for module in (cammimic.eval, cammimic.lora.files, cammimic.plugins):
        assert module.one_line is one_line
        assert not any(
            hasattr(module, n) for n in ("_one_line", "_describe", "_hash_file", "_component")
        )
