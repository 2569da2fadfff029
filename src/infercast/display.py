"""Tables on the terminal: whole numbers and ids at any width, and a quiet exit when a pipe closes."""

from __future__ import annotations

from typing import Any


def console():
    """A rich console; piped output 160 columns wide or more (ids and numbers fold, never cut), a terminal's
    own width; a reader that stops reading (``| head``) ends the command quietly with status 0."""
    import os
    import shutil
    import sys

    from rich.console import Console

    class Quiet(Console):
        def on_broken_pipe(self) -> None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(0)

    if sys.stdout.isatty():
        return Quiet()
    return Quiet(width=max(shutil.get_terminal_size((160, 24)).columns, 160), soft_wrap=False)


def table(*headers: str, **options: Any):
    """A rich table whose cells fold onto more lines rather than being cut with an ellipsis."""
    from rich.table import Table

    t = Table(**options)
    for h in headers:
        t.add_column(h, overflow="fold")
    return t
