"""Template and policy scanners: cfn-lint and checkov on every synthesized template, parliament
on every IAM policy document in them (tokens resolved first, so it sees literal ARNs).

Every finding fails unless ``security/scanner_skips.toml`` accepts it, by tool, rule id and the
resource or policy it is on, with a reason. A skip that matches no finding is reported as stale,
so the file never accumulates excuses for problems that are gone.

checkov pins an old boto3 and packaging, so it runs from its own virtual environment,
``.venv-checkov`` (created from ``security/requirements-checkov.txt`` when missing).

    python -m security.scanners            # synthesize registry + matrix variants, scan all
    python -m security.scanners DIR        # scan the templates of an existing cloud assembly
    python -m security.scanners --setup    # only create .venv-checkov (make setup runs this)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import venv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from security.synth import REPO

SECURITY_DIR = Path(__file__).resolve().parent
SKIPS_FILE = SECURITY_DIR / "scanner_skips.toml"
CHECKOV_VENV = REPO / ".venv-checkov"
CHECKOV_REQUIREMENTS = SECURITY_DIR / "requirements-checkov.txt"
TOOLS = ("cfn-lint", "checkov", "parliament")
MAX_REPORTED = 60


@dataclass(frozen=True)
class Finding:
    """One scanner finding. ``where`` is a logical id (templates) or a policy name
    (``<stack>/<logical id>[/...]``, parliament)."""

    tool: str
    rule: str
    where: str
    file: str
    message: str

    def line(self) -> str:
        return f"{self.tool} {self.rule} {self.where} ({Path(self.file).name}): {self.message}"


@dataclass(frozen=True)
class Skip:
    """An accepted finding: ``where`` and ``detail`` are shell-style patterns on the finding's
    resource or policy and on its message (``detail`` defaults to any message)."""

    tool: str
    rule: str
    where: str
    reason: str
    detail: str = "*"

    def matches(self, finding: Finding) -> bool:
        return (finding.tool == self.tool and finding.rule == self.rule
                and fnmatch.fnmatchcase(finding.where, self.where)
                and fnmatch.fnmatchcase(finding.message, self.detail))


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[tuple[Finding, Skip]] = field(default_factory=list)
    stale: list[Skip] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # tool -> things scanned
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.findings and not self.stale


class SkipFileError(Exception):
    """scanner_skips.toml is malformed (unknown tool, missing reason...)."""


def load_skips(path: Path = SKIPS_FILE) -> list[Skip]:
    data = tomllib.loads(path.read_text())
    skips = []
    for tool, entries in data.items():
        if tool not in TOOLS:
            raise SkipFileError(f"{path}: unknown tool {tool!r} (known: {', '.join(TOOLS)})")
        for index, entry in enumerate(entries):
            missing = {"rule", "where", "reason"} - set(entry)
            if missing or len(str(entry.get("reason", "")).split()) < 8:
                raise SkipFileError(f"{path}: {tool}[{index}]: needs rule, where and a reason "
                                    f"of a sentence or more (missing: {sorted(missing)})")
            unknown = set(entry) - {"rule", "where", "reason", "detail"}
            if unknown:
                raise SkipFileError(f"{path}: {tool}[{index}]: unknown keys {sorted(unknown)}")
            skips.append(Skip(tool, str(entry["rule"]), str(entry["where"]),
                              " ".join(str(entry["reason"]).split()),
                              str(entry.get("detail", "*"))))
    return skips


# --- cfn-lint ------------------------------------------------------------------------------


def run_cfn_lint(templates: Sequence[Path]) -> list[Finding]:
    """cfn-lint (the one installed in this venv, pinned in requirements-dev.txt), all rules."""
    completed = subprocess.run(  # noqa: S603 - fixed argv
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", "--",
         *map(str, templates)],
        capture_output=True, text=True, check=False)
    # The exit code is a bit mask of the finding levels (2 errors, 4 warnings, 8 info); the
    # JSON list on stdout is the answer, and its absence a failure of the tool itself.
    try:
        matches = json.loads(completed.stdout)
    except ValueError:
        raise RuntimeError(f"cfn-lint failed ({completed.returncode}): "
                           f"{completed.stderr[-2000:]}") from None
    findings = []
    for match in matches:
        path = match["Location"].get("Path") or []
        where = str(path[1]) if len(path) > 1 and path[0] == "Resources" else "/".join(
            map(str, path)) or "(template)"
        findings.append(Finding("cfn-lint", match["Rule"]["Id"], where, match["Filename"],
                                match["Message"]))
    return findings


# --- checkov -------------------------------------------------------------------------------


def ensure_checkov(venv_dir: Path = CHECKOV_VENV) -> Path:
    """The checkov executable of ``venv_dir``, creating the venv from the pinned requirements
    if it is missing or out of date."""
    executable = venv_dir / "bin" / "checkov"
    stamp = venv_dir / ".installed"
    wanted = CHECKOV_REQUIREMENTS.read_text()
    if executable.exists() and stamp.exists() and stamp.read_text() == wanted:
        return executable
    uv = Path(sys.executable).with_name("uv")
    if uv.exists():  # the project's installer (requirements-bootstrap.txt): seconds, not minutes
        subprocess.run([str(uv), "venv", "--quiet", "--clear", "--python",  # noqa: S603
                        sys.executable, str(venv_dir)], check=True)
        install = [str(uv), "pip", "install", "--quiet", "--python",
                   str(venv_dir / "bin" / "python")]
    else:
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        install = [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check"]
    subprocess.run([*install, "-r", str(CHECKOV_REQUIREMENTS)], check=True)  # noqa: S603
    stamp.write_text(wanted)
    return executable


def run_checkov(templates: Sequence[Path], executable: Path) -> list[Finding]:
    """checkov's CloudFormation checks on every template in one run, offline
    (``--skip-download``: no Prisma Cloud calls)."""
    if not templates:
        return []
    completed = subprocess.run(  # noqa: S603 - fixed argv
        [str(executable), "--framework", "cloudformation", "--output", "json", "--quiet",
         "--compact", "--skip-download", "--file", *map(str, templates)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "LOG_LEVEL": "ERROR"})
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed ({completed.returncode}): {completed.stderr[-2000:]}")
    reports = json.loads(completed.stdout or "[]")
    findings = []
    for report in reports if isinstance(reports, list) else [reports]:
        for check in report.get("results", {}).get("failed_checks", []):
            where = check["resource"].split(".", 1)[-1]
            file = next((str(t) for t in templates if str(t).endswith(check["file_path"])),
                        check["file_path"])
            findings.append(Finding("checkov", check["check_id"], where, file,
                                    check["check_name"]))
    return findings


# --- parliament ----------------------------------------------------------------------------


def _stringify_conditions(document: Mapping[str, Any]) -> dict[str, Any]:
    """Condition values as strings, as IAM reads them: parliament crashes on the number CDK
    writes for ``s3:TlsVersion`` (``NumericLessThan: 1.2``)."""
    def text(value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, list):
            return [text(v) for v in value]
        return value

    copy = json.loads(json.dumps(document))
    statements = copy["Statement"]
    for statement in statements if isinstance(statements, list) else [statements]:
        for block in statement.get("Condition", {}).values():
            for key in block:
                block[key] = text(block[key])
    return copy


def run_parliament(templates: Mapping[str, Mapping[str, Any]]) -> tuple[list[Finding], int]:
    """parliament on every policy document of every template (by stack name); returns the
    findings and the number of documents linted."""
    from parliament import analyze_policy_string

    from security.templates import collect_policies, resolve_template

    findings = []
    linted = 0
    for stack_name, template in templates.items():
        policies = collect_policies(resolve_template(template, stack_name))
        for kind, name, document in policies.documents():
            linted += 1
            policy = analyze_policy_string(json.dumps(_stringify_conditions(document)),
                                           ignore_private_auditors=True,
                                           include_community_auditors=False)
            for finding in policy.findings:
                detail = finding.detail if isinstance(finding.detail, str) else json.dumps(
                    finding.detail)
                findings.append(Finding("parliament", finding.issue, f"{kind}:{name}",
                                        stack_name, detail[:300]))
    return findings, linted


# --- all of them ---------------------------------------------------------------------------


def scan(template_files: Mapping[str, Path], *, skips: Iterable[Skip] | None = None,
         checkov: Path | None = None, resource_scan: Iterable[str] | None = None) -> ScanResult:
    """Run the three scanners on the templates (stack name -> file) and apply the skips.

    ``resource_scan`` (default: every stack) names the stacks cfn-lint and checkov read;
    parliament always reads every policy of every stack."""
    skips = list(load_skips() if skips is None else skips)
    result = ScanResult()
    structural = {name: path for name, path in template_files.items()
                  if resource_scan is None or name in set(resource_scan)}
    files = sorted(structural.values())
    raw: list[Finding] = []

    with tempfile.TemporaryDirectory(prefix="scan-") as scratch:
        copies = scan_copies(structural, Path(scratch))
        originals = {str(copy): str(structural[name]) for name, copy in copies.items()}
        scanned = sorted(copies.values())
        started = time.monotonic()
        raw += run_cfn_lint(scanned)
        result.seconds["cfn-lint"] = time.monotonic() - started

        started = time.monotonic()
        raw += run_checkov(scanned, checkov or ensure_checkov())
        result.seconds["checkov"] = time.monotonic() - started
    raw = [replace(f, file=originals.get(f.file, f.file)) for f in raw]

    started = time.monotonic()
    templates = {name: json.loads(path.read_text()) for name, path in template_files.items()}
    policy_findings, linted = run_parliament(templates)
    raw += policy_findings
    result.seconds["parliament"] = time.monotonic() - started
    result.counts = {"cfn-lint": len(files), "checkov": len(files), "parliament": linted}

    used: set[Skip] = set()
    for finding in dict.fromkeys(raw):  # parliament repeats a finding per expanded action
        skip = next((s for s in skips if s.matches(finding)), None)
        if skip is None:
            result.findings.append(finding)
        else:
            used.add(skip)
            result.skipped.append((finding, skip))
    result.stale = [s for s in skips if s not in used]
    return result


def scan_copies(template_files: Mapping[str, Path], directory: Path) -> dict[str, Path]:
    """Each template copied to ``<directory>/<stack name>.template.json``.

    Why not scan the cloud assembly where it is: checkov (3.3.30) adds its own ``__file__``
    key, the template's path, to the Lambda environment variables CKV_AWS_45 inspects, and a
    CDK stage's path ``assembly-<slug>/<slug>CustomerStack<hash>.template.json`` holds a run
    of exactly 40 characters of ``[A-Za-z0-9/+=]`` for every nine-letter slug, which the check
    takes for an AWS secret access key. A stack name (``PhiExchange-<slug>``, at most 32
    characters) in a temporary directory's path never does."""
    copies = {}
    for name, path in template_files.items():
        copy = directory / f"{name}.template.json"
        shutil.copyfile(path, copy)
        copies[name] = copy
    return copies


def report(result: ScanResult) -> str:
    lines = [f"scanned: {result.counts.get('cfn-lint', 0)} templates with cfn-lint "
             f"({result.seconds.get('cfn-lint', 0):.1f} s) and checkov "
             f"({result.seconds.get('checkov', 0):.1f} s), "
             f"{result.counts.get('parliament', 0)} policy documents with parliament "
             f"({result.seconds.get('parliament', 0):.1f} s); {len(result.findings)} findings, "
             f"{len(result.skipped)} skipped by {SKIPS_FILE.name}, {len(result.stale)} stale skips"]
    lines += [f"FINDING {f.line()}" for f in result.findings[:MAX_REPORTED]]
    if len(result.findings) > MAX_REPORTED:
        lines.append(f"... and {len(result.findings) - MAX_REPORTED} more findings")
    if result.findings:
        lines.append(f"What to do: fix the construct the finding names (stacks/), or, if the "
                     f"design accepts it, add a skip with the tool, rule, resource and a reason "
                     f"an auditor would accept to {SKIPS_FILE.relative_to(REPO)}.")
    lines += [f"STALE SKIP {s.tool} {s.rule} {s.where}: matches no finding; remove it"
              for s in result.stale]
    return "\n".join(lines)


def _template_files(assembly: Path) -> dict[str, Path]:
    """Stack name -> template file of every stack in a cloud assembly (nested ones included)."""
    files = {}
    for manifest_path in sorted(assembly.rglob("manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        for artifact in manifest.get("artifacts", {}).values():
            if artifact.get("type") == "aws:cloudformation:stack":
                properties = artifact["properties"]
                name = properties.get("stackName") or Path(properties["templateFile"]).stem
                files[name] = manifest_path.parent / properties["templateFile"]
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m security.scanners", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true",
                        help="only create .venv-checkov (if missing or out of date) and exit")
    parser.add_argument("assembly", nargs="?", type=Path,
                        help="an existing cloud assembly (default: synthesize the registry and "
                        "the access-matrix variants into a temporary directory)")
    args = parser.parse_args(argv)
    if args.setup:
        print(ensure_checkov())
        return 0
    if args.assembly:
        result = scan(_template_files(args.assembly))
    else:
        from security.access_matrix import matrix_customers
        from security.synth import synthesize

        with tempfile.TemporaryDirectory(prefix="scanners-") as outdir:
            app = synthesize(matrix_customers(), Path(outdir))
            result = scan(app.template_files)
    print(report(result))
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
