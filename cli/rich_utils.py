"""Everything the command line shows with rich: progress bars and the layer table.

rich is imported only when something is shown with it (a terminal's progress bars, ``info``'s
table): importing it costs ~30 ms of every piped or ``--quiet`` run.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table


class NoProgress:
    """Stands in for progress bars when stderr is not a terminal or --quiet is set."""

    def add_file(self, name: str):
        return None

    def file_done(self, name: str) -> None:
        pass

    def line(self, text: str) -> None:
        """A result or warning line on stderr (a closed or broken stderr loses only the line)."""
        try:
            print(text, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass


class FileProgress(NoProgress):
    """One bar per running file plus an overall bar for a batch, on stderr; result lines are
    printed above the bars (never onto them), and the bars vanish at the end."""

    def __init__(self, progress: Progress, files: int):
        self.progress = progress
        self.overall = progress.add_task("all files", total=files, speed="") if files > 1 else None
        self.tasks: dict[str, int] = {}
        self.lock = threading.Lock()

    def add_file(self, name: str):
        started = time.perf_counter()
        with self.lock:
            task = self.progress.add_task(name, total=None, speed="")
            self.tasks[name] = task

        def update(done: int, total: int | None, rate: float | None = None) -> None:
            elapsed = time.perf_counter() - started
            speed = f"{done / rate / elapsed:.1f}× real time" if rate and elapsed > 0 else ""
            self.progress.update(task, completed=done, total=total, speed=speed)

        return update

    def file_done(self, name: str) -> None:
        with self.lock:
            if name in self.tasks:
                self.progress.remove_task(self.tasks.pop(name))
            if self.overall is not None:
                self.progress.advance(self.overall)

    def line(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def progress_bars(enabled: bool, files: int, force: bool = False) -> Iterator[NoProgress]:
    """Bars on stderr when it is a terminal (or ``force``: sox's -S), else plain lines."""
    if not enabled or not (force or sys.stderr.isatty()):
        yield NoProgress()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[speed]}"),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True, highlight=False, force_terminal=True if force else None)
    with Progress(*columns, console=console, transient=True) as progress:
        yield FileProgress(progress, files)


def layer_table(rows: list[dict], title: str) -> Table:
    """The layer tree: blocks indented, their layers below them."""
    from rich.table import Table

    columns = [
        "path",
        "type",
        "channels",
        "rate",
        "ahead",
        "kernel",
        "stride",
        "padding",
        "output_padding",
        "groups",
        "dilation",
        "padding_mode",
        "params",
        "flops",
        "computed_as",
        "buffers",
    ]
    headers = {
        "channels": "ch",
        "kernel": "K",
        "stride": "s",
        "padding": "p",
        "output_padding": "op",
        "groups": "g",
        "dilation": "d",
        "padding_mode": "mode",
        "ahead": "look-ahead",
        "flops": "FLOP/frame",
        "computed_as": "as",
    }
    table = Table(
        title=title,
        title_justify="left",
        caption="K kernel, s stride, p padding, op output_padding, g groups, d dilation; "
        "rate: output/input rate; look-ahead and FLOP per input frame of the layer",
        caption_justify="left",
    )
    for column in columns:
        table.add_column(
            headers.get(column, column),
            justify="left" if column in ("path", "type", "padding_mode", "buffers", "computed_as") else "right",
        )
    for row in rows:
        cells = dict(row)
        cells["path"] = "  " * row["depth"] + row["path"].rsplit(".", 1)[-1] if row["depth"] else row["path"]
        cells["channels"] = f"{row['channels_in']}→{row['channels_out']}"
        cells["rate"] = f"×{row['rate_factor']:g}"
        cells["ahead"] = f"{row['lookahead_input_frames']:g}"
        cells["flops"] = f"{row['flops_per_input_frame']:,}" if row["flops_per_input_frame"] else ""
        if row.get("reduce"):  # a block that combines branches: how
            cells["type"] = f"{row['type']} ({row['reduce']})"
        table.add_row(*["" if cells.get(c) is None else str(cells.get(c, "")) for c in columns])
    return table


def print_table(table: Table) -> None:
    from rich.console import Console

    # piped or redirected output is not cut at 80 columns
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    try:
        console.print(table)
    except SystemExit:  # rich's own answer to a closed pipe: exit(1), silently; the caller says it in one line
        raise BrokenPipeError(32, "Broken pipe") from None
