"""Synthesizing every customer, or every pipeline, in parallel processes, and joining their
cloud assemblies.

Why: building a customer's constructs is ~270 Python-to-jsii round trips, each serialized
through one Node process, so one process keeps about one core busy however many cores the
machine has (docs/benchmarks.md, "Synth at scale"). ``cdk synth -c customer=all`` therefore
splits the registry into contiguous shards: the CLI's own process builds the account stacks
and the first shard, one more ``app.py`` process per other shard builds its customers' stages
into a directory of its own, and this module joins those assemblies into the one the CLI
reads (``cdk synth -c pipeline=1`` likewise gives each pipeline, with its stages, a process).
The joined assembly is the one a single process writes, file for file (the tests
compare them; ``validation-report.json``, the gate's report, may list its findings in another
order).

The join is written here because the CDK has no API to add a nested assembly synthesized by
another process (``CloudAssemblyBuilder`` writes only what its own app holds); it moves whole
directories and merges three JSON files whose schemas the CDK versions (``manifest.json``:
cloud-assembly-schema; ``tree.json``: ``tree-0.1``), and refuses anything it does not expect.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

# Below this many customers a second process costs more (its own Node, aws-cdk-lib loaded
# again: ~2 s) than it saves (measured: ~0.1 s per customer).
MIN_CUSTOMERS_PER_SHARD = 40
MAX_DEFAULT_PROCESSES = 8
NESTED_ASSEMBLY = "cdk:cloud-assembly"
SHARED_ARTIFACTS = ("Tree", "aws-cdk-lib/feature-flag-report")  # every app has its own
MANIFEST, TREE, REPORT = "manifest.json", "tree.json", "validation-report.json"
JOINED = {MANIFEST, TREE, REPORT, "cdk.out"}  # merged, not moved
KNOWN_MANIFEST_KEYS = {"version", "artifacts", "minimumCliVersion"}
T = TypeVar("T")


class ShardError(Exception):
    """A shard's assembly is not what a shard of this app writes."""


def shard_count(units: int, cores: int, requested: int | None = None, *,
                per_shard: int = MIN_CUSTOMERS_PER_SHARD) -> int:
    """How many processes synthesize ``units`` (customers, or pipelines): ``requested`` if
    given (1: one process), else one per core while each has at least ``per_shard``, and at
    most :data:`MAX_DEFAULT_PROCESSES` (each holds ~0.7 GiB at 500 customers)."""
    if requested is not None:
        return max(1, min(requested, units or 1))
    return max(1, min(cores, units // per_shard, MAX_DEFAULT_PROCESSES))


def split(units: Sequence[T], shards: int) -> list[list[T]]:
    """Contiguous, near-equal runs in order, so the joined assembly lists the stages in the
    order one process would."""
    size, extra = divmod(len(units), shards)
    runs, start = [], 0
    for index in range(shards):
        end = start + size + (index < extra)
        runs.append(list(units[start:end]))
        start = end
    return runs


def join(outdir: Path, shard_dirs: Sequence[Path]) -> None:
    """Move each shard's stages (nested assemblies), stacks (the pipelines') and assets into
    ``outdir``, the first shard's assembly, then merge the manifests, construct trees and
    validation reports. Shards are joined in order; each directory is removed after."""
    manifest = _read(outdir / MANIFEST)
    tree = _read(outdir / TREE)
    report_path = outdir / REPORT
    report = _read(report_path) if report_path.exists() else None
    written = _files_of(manifest)  # by this synth: a shard may not bring them again
    for shard in shard_dirs:
        shard_manifest = _read(shard / MANIFEST)
        shard_tree = _read(shard / TREE)
        if shard_manifest.get("version") != manifest.get("version"):
            raise ShardError(f"{shard / MANIFEST}: version: {shard_manifest.get('version')}, "
                             f"the app's is {manifest.get('version')}")
        for key in sorted(set(shard_manifest) - KNOWN_MANIFEST_KEYS):
            # e.g. "missing": context lookups, which would need the CLI to run them
            raise ShardError(f"{shard / MANIFEST}: {key}: not joinable (known: "
                             f"{', '.join(sorted(KNOWN_MANIFEST_KEYS))})")
        if shard_tree.get("version") != tree.get("version") or "children" not in shard_tree.get(
                "tree", {}):
            raise ShardError(f"{shard / TREE}: not a {tree.get('version')} tree with children "
                             "(a tree split into several files is not joinable)")
        stages: dict[str, Any] = {}
        others: dict[str, Any] = {}
        for artifact_id, artifact in shard_manifest["artifacts"].items():
            if artifact_id in SHARED_ARTIFACTS:
                continue
            if artifact_id in manifest["artifacts"]:
                raise ShardError(f"{shard / MANIFEST}: artifacts.{artifact_id}: already in "
                                 "another shard")
            (stages if artifact.get("type") == NESTED_ASSEMBLY else others)[artifact_id] = artifact
        for entry in sorted(shard.iterdir()):
            target = outdir / entry.name
            if entry.name in JOINED:
                continue
            if entry.name.startswith("asset.") and target.exists():
                continue  # content-addressed: the same name holds the same bytes
            if entry.name in written:
                raise ShardError(f"{entry}: {entry.name} was also written by another shard")
            # Anything else of that name is an earlier synth's (the CDK overwrites its output
            # in place, too): this synth's is the shard's.
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            shutil.move(str(entry), str(target))
        # Stages after the app's last stage, other artifacts before the shared ones: the order
        # one process writes.
        artifacts = manifest["artifacts"]
        artifacts = _insert(artifacts, stages, 1 + max(
            (i for i, a in enumerate(artifacts.values()) if a.get("type") == NESTED_ASSEMBLY),
            default=-1))
        manifest["artifacts"] = _insert(artifacts, others, _first_of(artifacts, SHARED_ARTIFACTS))
        written |= _files_of(shard_manifest)
        children = tree["tree"]["children"]
        tree["tree"]["children"] = _insert(
            children, {k: v for k, v in shard_tree["tree"]["children"].items() if k != "Tree"},
            _first_of(children, ("Tree",)))
        if report is not None and (shard / REPORT).exists():
            _merge_report(report, _read(shard / REPORT))
        shutil.rmtree(shard)
    # Written as the CDK writes them (manifest: 2-space indent; tree: compact).
    (outdir / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    (outdir / TREE).write_text(json.dumps(tree, separators=(",", ":"), ensure_ascii=False))
    if report is not None:
        report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))


def _files_of(manifest: dict[str, Any]) -> set[str]:
    """The top-level files and directories a manifest's artifacts name."""
    names = set()
    for artifact in manifest.get("artifacts", {}).values():
        properties = artifact.get("properties", {})
        for key in ("directoryName", "templateFile", "file"):
            if isinstance(properties.get(key), str):
                names.add(properties[key].split("/", 1)[0])
        if isinstance(artifact.get("additionalMetadataFile"), str):
            names.add(artifact["additionalMetadataFile"].split("/", 1)[0])
    return names


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ShardError(f"{path}: {err}") from None


def _insert(mapping: dict[str, Any], added: dict[str, Any], at: int) -> dict[str, Any]:
    items = list(mapping.items())
    return dict(items[:at] + list(added.items()) + items[at:])


def _first_of(mapping: dict[str, Any], keys: Sequence[str]) -> int:
    """The position of the first of ``keys`` in ``mapping``, or its end."""
    return next((i for i, key in enumerate(mapping) if key in keys), len(mapping))


def _merge_report(report: dict[str, Any], shard_report: dict[str, Any]) -> None:
    """Each plugin's findings (one entry per finding and construct): a shard's follow."""
    plugins = {p["pluginName"]: p for p in report["pluginReports"]}
    for shard_plugin in shard_report["pluginReports"]:
        plugin = plugins.get(shard_plugin["pluginName"])
        if plugin is None:
            report["pluginReports"].append(shard_plugin)
            plugins[shard_plugin["pluginName"]] = shard_plugin
            continue
        if shard_plugin["conclusion"] != "success":
            plugin["conclusion"] = shard_plugin["conclusion"]
        for kind in ("violations", "suppressedViolations"):
            plugin[kind].extend(shard_plugin[kind])
