"""Everything the command line shows with rich: progress bars and the layer table."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

stderr_console = Console(stderr=True, highlight=False)
# piped or redirected output is not cut at 80 columns
stdout_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


class NoProgress:
    """Stands in for progress bars when stderr is not a terminal or --quiet is set."""

    def add_file(self, name: str, frames: int):
        return lambda done, total: None

    def file_done(self, name: str) -> None:
        pass


class FileProgress(NoProgress):
    """One bar per file plus an overall bar for a batch, on stderr."""

    def __init__(self, progress: Progress, files: int):
        self.progress = progress
        self.overall = progress.add_task("all files", total=files) if files > 1 else None
        self.tasks: dict[str, int] = {}

    def add_file(self, name: str, frames: int):
        task = self.progress.add_task(name, total=max(frames, 1))
        self.tasks[name] = task
        return lambda done, total: self.progress.update(task, completed=done, total=max(total, 1))

    def file_done(self, name: str) -> None:
        if name in self.tasks:
            self.progress.remove_task(self.tasks.pop(name))
        if self.overall is not None:
            self.progress.advance(self.overall)


@contextmanager
def progress_bars(enabled: bool, files: int) -> Iterator[NoProgress]:
    if not enabled or not sys.stderr.isatty():
        yield NoProgress()
        return
    columns = (TextColumn("{task.description}", style="bold"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn())
    with Progress(*columns, console=stderr_console, transient=True) as progress:
        yield FileProgress(progress, files)


def layer_table(rows: list[dict], title: str) -> Table:
    """The layer tree: blocks indented, their layers below them."""
    columns = ["path", "type", "channels", "rate", "ahead", "kernel", "stride", "padding",
               "output_padding", "groups", "dilation", "padding_mode", "params", "flops", "buffers"]
    headers = {"channels": "ch", "kernel": "K", "stride": "s", "padding": "p", "output_padding": "op",
               "groups": "g", "dilation": "d", "padding_mode": "mode", "ahead": "look-ahead",
               "flops": "FLOP/frame"}
    table = Table(title=title, title_justify="left",
                  caption="K kernel, s stride, p padding, op output_padding, g groups, d dilation; "
                          "rate: output/input rate; look-ahead and FLOP per input frame of the layer",
                  caption_justify="left")
    for column in columns:
        table.add_column(headers.get(column, column),
                         justify="left" if column in ("path", "type", "padding_mode", "buffers") else "right")
    for row in rows:
        cells = dict(row)
        cells["path"] = "  " * row["depth"] + row["path"].rsplit(".", 1)[-1] if row["depth"] else row["path"]
        cells["channels"] = f"{row['channels_in']}→{row['channels_out']}"
        cells["rate"] = f"×{row['rate_factor']:g}"
        cells["ahead"] = f"{row['lookahead_input_frames']:g}"
        cells["flops"] = f"{row['flops_per_input_frame']:,}" if row["flops_per_input_frame"] else ""
        if row["type"] == "parallel":
            cells["type"] = f"parallel ({row['reduce']})"
        table.add_row(*["" if cells.get(c) is None else str(cells.get(c, "")) for c in columns])
    return table


def print_table(table: Table) -> None:
    stdout_console.print(table)
