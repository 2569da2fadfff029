"""The ``infercast`` command run in-process as a user runs it (``main()``: what turns an InfercastError into
'error: ...' and exit 2), shared by the end-to-end tests."""

from __future__ import annotations

import sys
import traceback

from click.testing import CliRunner

from infercast import cli as cli_module


def run_main(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str, str | None]:
    """(exit code, stdout, stderr, the traceback of an exception that escaped, else None)."""
    runner = CliRunner(env={"COLUMNS": "200", **(env or {})})
    argv = sys.argv
    escaped = None
    with runner.isolation() as streams:
        sys.argv = ["infercast", *args]
        try:
            cli_module.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001  (what the user would see as a traceback)
            escaped = traceback.format_exc()
            code = 1
        finally:
            sys.argv = argv
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err, escaped
