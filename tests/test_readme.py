"""Every command the README shows is true: its make targets exist, its stack ids are the
app's, each CLI line parses with the program's own parser, and the cost example prints the
figures the README quotes. (The two main commands themselves are what CI runs.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
PROGRAMS = ("make ", "cdk ", "phi-exchange-admin ", "partner-transfer ", "python -m ")
# Lines of the README's shell blocks (without comments and prompts), and inline code spans
# that are commands.
BLOCKS = re.findall(r"^```\n(.*?)^```", README, re.MULTILINE | re.DOTALL)
COMMANDS = [re.split(r"\s#\s", line)[0].strip().removeprefix("$ ")
            for block in BLOCKS for line in block.splitlines()]
COMMANDS += [span for span in re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", README,
                                                                 flags=re.MULTILINE | re.DOTALL))
             if len(span.split()) > 2]  # `phi-exchange-admin cost` names a command: not run
# Usage-style spans: `offboard <slug> [--export-custody report.json]`: a value for each
# placeholder, optional parts included.
COMMANDS = [re.sub(r"<slug>", "acme", re.sub(r"[\[\]]", "", c)).replace("<", "").replace(">", "")
            for c in COMMANDS if c.startswith(PROGRAMS)]


def commands(program: str) -> list[list[str]]:
    found = [shlex.split(c) for c in COMMANDS if c.startswith(program + " ")]
    assert found, f"the README shows no {program} command"
    return found


def test_every_make_target_shown_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    shown = {argv[1] for argv in commands("make")}
    assert shown >= {"demo", "test"}
    assert shown <= targets, shown - targets


def test_every_stack_id_shown_is_the_apps() -> None:
    from stacks import app_builder

    ids = {app_builder.ACCESS_STACK_ID, app_builder.AUDIT_STACK_ID, app_builder.CUSTOMER_STACK_ID,
           app_builder.LOG_ARCHIVE_STACK_ID, app_builder.PIPELINE_STACK_ID}
    shown = {word for argv in commands("cdk") for word in argv if word.endswith("Stack")}
    assert shown == ids


def test_every_operator_command_parses() -> None:
    from admin.cli import build_parser

    for argv in commands("phi-exchange-admin"):
        build_parser().parse_args(argv[1:])


def test_every_partner_command_parses() -> None:
    from partner_transfer.cli import build_parser

    for argv in commands("partner-transfer"):
        build_parser().parse_args(argv[1:])


def test_every_module_command_shown_exists() -> None:
    shown = commands("python")
    for argv in shown:
        module, rest = argv[2], argv[3:]
        subcommand = [rest[0]] if rest and not rest[0].startswith("-") else []
        ran = subprocess.run([sys.executable, "-m", module, *subcommand, "--help"],
                             capture_output=True, text=True, cwd=REPO, check=False)
        assert ran.returncode == 0, (argv, ran.stderr[-500:])


def test_the_cost_example_prints_the_figures_the_readme_quotes() -> None:
    (argv,) = [a for a in commands("phi-exchange-admin") if a[1:2] == ["cost"] and len(a) > 3]
    ran = subprocess.run([sys.executable, "-c", "from admin.cli import main; "
                          "raise SystemExit(main())", *argv[1:]],
                         capture_output=True, text=True, cwd=REPO, check=False)
    assert ran.returncode == 0, ran.stderr
    total = re.search(r"^total\s+([0-9.]+)", ran.stdout, re.MULTILINE)
    without = re.search(r"without S3 Bucket Keys the total would be ([0-9.]+)", ran.stdout)
    assert total and without, ran.stdout
    assert f"about **${total.group(1)} a month**" in README
    assert f"(without them: ${without.group(1)})" in README
