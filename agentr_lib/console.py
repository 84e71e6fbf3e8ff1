"""In a stage kernel: its progress bars, mirrored as lines onto the console of the pipeline that started it.

The pipeline starts every stage kernel with `--ext=agentr_lib.console`; IPython then calls `load_ipython_extension`.
A kernel's bars are widgets (tqdm) or HTML (the HF Trainer), which a terminal cannot show; the lines go to the
kernel's inherited stderr, i.e. the pipeline's console, and the notebook keeps its widgets.
"""
from __future__ import annotations

import re
import sys
import time

PROGRESS_EVERY_S = 10.0  # a running bar's state reaches the console at most this often (its first and last always)


def load_ipython_extension(ipython) -> None:
    """IPython calls this in every stage kernel the pipeline starts (`--ext`): the notebook's progress bars are
    mirrored, as lines, onto the console of the pipeline."""
    lines = ProgressLines(open(_console_fd(), "w", buffering=1, encoding="utf-8", closefd=False))
    _mirror_tqdm_widgets(lines)
    ipython.display_pub.register_hook(_html_progress_hook(lines))
    ipython.events.register("post_run_cell", lambda result: lines.flush())  # bars that never say they are done
    # jupyter_client interrupts a kernel before it asks it to shut down (jupyter_client#620); when that SIGINT lands
    # while the kernel is still finishing its last reply, ipykernel logs "KeyboardInterrupt caught in kernel" as an
    # error, though nothing was running. That message alone is dropped.
    ipython.kernel.log.addFilter(lambda record: not str(record.msg).startswith("KeyboardInterrupt caught in kernel"))


class ProgressLines:
    """Progress bars as console lines, readable on a terminal and in a log: a bar's first state, then its latest
    state at most every `every` seconds, and its last state (when the bar closes, or at the end of the cell)."""

    def __init__(self, stream, every: float = PROGRESS_EVERY_S):
        self.stream, self.every = stream, every
        self.latest: dict = {}  # bar key -> its newest state not yet on the console
        self.printed: dict = {}  # bar key -> (time, text) of its last line

    def show(self, key, text: str, final: bool = False) -> None:
        self.latest[key] = text
        printed_at = self.printed.get(key, (None,))[0]
        if final or printed_at is None or time.monotonic() - printed_at >= self.every:
            self._print(key)

    def flush(self) -> None:
        for key in list(self.latest):
            self._print(key)

    def _print(self, key) -> None:
        text = self.latest.pop(key)
        if self.printed.get(key, (None, None))[1] != text:
            self.stream.write(f"  {text}\n")
            self.printed[key] = (time.monotonic(), text)


def _console_fd() -> int:
    """The kernel's inherited stderr. ipykernel points fd 2 at a pipe into the notebook and keeps the original as
    sys.stderr.fileno(); where it does not redirect (under pytest), fd 2 is still the original."""
    try:
        return sys.stderr.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return 2


def _mirror_tqdm_widgets(lines: ProgressLines) -> None:
    """Every tqdm.auto bar of a kernel (run_jobs', the datasets library's) is tqdm's notebook bar, which redraws its
    widget in `display` (the method tqdm documents for overloading); after each redraw, the same state as text."""
    from tqdm.notebook import tqdm as widget_bar
    redraw = widget_bar.display

    def display(bar, *args, **kwargs):
        drawn = redraw(bar, *args, **kwargs)
        lines.show(id(bar), bar.format_meter(**{**bar.format_dict, "ncols": None}), final=bar.disable)  # closed
        return drawn

    widget_bar.display = display


# The HF Trainer's notebook bar: an HTML <progress> element and a label ("[3/6 00:01 < 00:01, 2.50 it/s, Epoch
# 0.50/1]"), redrawn through update_display. Read from the display messages rather than by patching transformers,
# which costs seconds to import in a notebook that never trains.
HTML_PROGRESS_LABEL = re.compile(r"<progress [^>]*></progress>\s*(.*?)\s*</div>", re.S)


def _html_progress_hook(lines: ProgressLines):
    """A hook for ipykernel's display publisher, which passes every display message through its hooks first."""
    def hook(msg: dict) -> dict:
        content = msg.get("content", {})
        label = HTML_PROGRESS_LABEL.search(content.get("data", {}).get("text/html", ""))
        if label:
            lines.show(content.get("transient", {}).get("display_id"), f"training {label[1]}")
        return msg
    return hook
