"""README.md stays true: two Quickstart commands (the second is what CI runs), every command it lists
exists, its Python examples run, and its sample output is what the command prints today."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from infercast.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    """The fenced blocks opened by ```lang (``""``: a bare fence)."""
    out, current, opened = [], None, None
    for line in README.splitlines():
        if line.startswith("```"):
            if current is None:
                current, opened = [], line[3:].strip()
            else:
                if opened == lang:
                    out.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return out


def test_quickstart_is_two_commands_and_ci_runs_the_second():
    quick = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].startswith("pip install . && infercast estimate ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_every_listed_command_exists():
    listed = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"^infercast (\w+)", listed, flags=re.M))
    assert names >= {"estimate", "simulate", "fleet", "compare", "hardware", "models", "claims", "validate",
                     "calibrate"}
    for name in names:
        assert cli.get_command(None, name) is not None, name


def test_python_examples_run():
    for code in _blocks("python"):
        exec(compile(code, "README.md", "exec"), {})


def test_sample_output_is_todays():
    """The Quickstart's sample table: each figure the README shows is what the command prints now."""
    sample = next(b for b in _blocks("") if b.startswith("$ infercast estimate --model llama-3-8b"))
    command, *shown = sample.splitlines()
    args = command.removeprefix("$ infercast ").split()
    out = CliRunner().invoke(cli, args, terminal_width=100)
    assert out.exit_code == 0, out.output
    printed = " ".join(out.output.split())
    for line in shown:
        for token in re.findall(r"[\d,.]+ ?(?:GB|ms|s|W|J|%|B|tokens/s)?", line):
            token = token.strip()
            if re.search(r"\d", token):
                assert token in printed, f"README shows {token!r} ({line.strip()}); the command prints {printed}"
