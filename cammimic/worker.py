"""One :func:`cammimic.transfer` in a child process that reports in JSON lines: the web app's runs.

The parent (:class:`Job`) starts ``python -m cammimic.worker`` and writes one JSON object, the
call, to its stdin::

    {"reference": "...", "image": "...", "output_dir": "...", "overrides": {"prompt": "...", ...}}

The child runs ``cammimic.transfer(reference, image, output_dir, progress=..., **overrides)`` and
writes one JSON object per line on its stdout, from the API's progress callback::

    {"event": "progress", "stage": "stage 1", "step": 3, "total": 60}
    {"event": "done", "output_dir": "...", "camera_score": 0.0042}
    {"event": "error", "message": "the one-line error cammimic run would print"}

and exits 0 after ``done``, 130 when interrupted (SIGINT: as Ctrl-C, Phase 1 saves its checkpoint
and the unfinished run directory is removed), 1 after another error. Anything else the run or a
library prints goes to stderr, never into the protocol. The values arrive as JSON, never as
arguments, so none can become an option. Why a child and not a thread: see docs/ui.md.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cammimic.errors import CammimicError

__all__ = ["Job", "main"]

#: Lines of the child's stderr a job keeps (the server's log shows them when a run fails).
STDERR_LINES = 50


def one_line(text: str) -> str:
    """``text`` on one line (newlines and runs of spaces as one space)."""
    return " ".join(str(text).split())


def main() -> int:
    """The child: read the call from stdin, run it, report on stdout (see the module docstring)."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # what anything else prints (Python or C) goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    def say(event: str, **data: Any) -> None:
        try:
            protocol.write(json.dumps({"event": event, **data}) + "\n")
        except (BrokenPipeError, ValueError):  # the parent is gone: nobody to tell
            pass

    def progress(stage: str, step: int, total: int) -> None:
        say("progress", stage=str(stage), step=int(step), total=int(total))

    try:
        call = json.loads(sys.stdin.read())
        if not (
            isinstance(call, dict)
            and isinstance(call.get("overrides"), dict)
            and all(isinstance(call.get(k), str) for k in ("reference", "image", "output_dir"))
        ):
            raise CammimicError(
                "the worker needs one JSON object with reference, image, output_dir and overrides"
            )
        from cammimic.api import transfer

        result = transfer(
            call["reference"],
            call["image"],
            call["output_dir"],
            progress=progress,
            **call["overrides"],
        )
        score = result.camera_score
        say(
            "done",
            output_dir=str(result.output_dir),
            camera_score=score if math.isfinite(score) else None,
        )
        return 0
    except KeyboardInterrupt:
        say("error", message="interrupted; nothing was written")
        return 130
    except CammimicError as exc:
        say("error", message=one_line(exc))
        return getattr(exc, "exit_code", 1)  # 130 for an interrupted finetuning
    except Exception as exc:  # noqa: BLE001 - the traceback goes to stderr (the server's log), the line to the app
        import traceback

        traceback.print_exc()
        say("error", message=one_line(f"unexpected {type(exc).__name__}: {exc}"))
        return 1


class Job:
    """One call of :func:`cammimic.transfer` in a ``python -m cammimic.worker`` child, followed from
    its JSON lines. ``workdir``: a private folder the job owns and removes when it ends; the child
    runs in an empty folder inside it, so a relative value (a Hub id) never names a server file."""

    def __init__(self, call: dict[str, Any], run_dir: Path, workdir: str | Path):
        self.run_dir = Path(run_dir)
        self.workdir = Path(workdir)
        cwd = self.workdir / "cwd"
        self.started = time.monotonic()
        #: the last progress event: (stage, step, total), and how many samplings have begun
        self.stage: tuple[str, int, int] | None = None
        self.samplings = 0
        self.events: list[dict[str, Any]] = []  #: every event but progress, in order
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        env = dict(os.environ, PYTHONUNBUFFERED="1", CAMMIMIC_DEBUG="0")
        try:
            cwd.mkdir()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cammimic.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                cwd=cwd,
            )
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self.proc.stdin.write(json.dumps(call).encode("utf-8"))
            self.proc.stdin.close()
        except BrokenPipeError:  # the child died at once; finish() reports its error
            pass

    def _read_events(self) -> None:
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") == "progress":
                stage, step, total = (
                    str(event.get("stage")),
                    int(event.get("step", 0)),
                    int(event.get("total", 0)),
                )
                if stage == "sampling" and step == 0:
                    self.samplings += 1
                self.stage = (stage, step, total)
            else:
                self.events.append(event)

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr.append(line)

    def done(self) -> bool:
        return self.proc.poll() is not None

    def status(self) -> str:
        """``stage 1: step 3/60 (12 s)``; a sampling after the first (best of N, windows) is numbered."""
        secs = time.monotonic() - self.started
        if self.stage:
            stage, step, total = self.stage
            if stage == "sampling" and self.samplings > 1:
                stage = f"sampling {self.samplings}"
            return f"{stage}: step {step}/{total} ({secs:.0f} s)"
        return f"running ({secs:.0f} s)"

    def error(self) -> str | None:
        """The child's one-line error, if it reported one."""
        errors = [e for e in self.events if e.get("event") == "error"]
        return one_line(errors[-1].get("message", "")) if errors else None

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def finish(self) -> None:
        """Wait for the child; raise its one-line error if it failed."""
        self.proc.wait()
        self._close()
        if self.proc.returncode != 0:
            logging.getLogger(__name__).warning(
                "the run of %s failed (exit %s); its last lines on stderr:\n%s",
                self.run_dir.name,
                self.proc.returncode,
                "\n".join(self.stderr),
            )
            raise CammimicError(
                self.error()
                or f"the run failed (exit {self.proc.returncode}) without a message; "
                "the server's log has its last lines"
            )

    def cancel(self, grace: float = 10.0) -> None:
        """Interrupt the child as Ctrl-C would (it removes its unfinished directory), then kill it."""
        if not self.done():
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        if self.proc.returncode == 0:
            return
        # A killed child cannot clean up: its hidden temporary directory is ours to remove.
        for tmp in self.run_dir.parent.glob(f".{self.run_dir.name}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(
            self.run_dir.with_name(self.run_dir.name + ".checkpoints"), ignore_errors=True
        )


if __name__ == "__main__":
    sys.exit(main())
