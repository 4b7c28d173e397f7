"""The partner registry: one TOML file per customer under ``customers/``, parsed into a typed,
frozen :class:`CustomerConfig`.

Why TOML: the standard library reads it (``tomllib``), it has comments (operators explain a
grant next to it), real types (integers are not strings), and no YAML-style surprises
(``no`` becoming ``False``, ``010`` becoming 8).

Validation is strict and complete: every problem in every file is collected and raised as one
:class:`RegistryError` whose lines each name the file, the field and the rule. Unknown fields
are errors, so a typo never silently drops a setting. Nothing here imports CDK.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from phi_core import defaults, identifiers, naming, placement, toml_files
from phi_core.vocabulary import AccessMode, Direction
from stacks import certificates

# "-c customer=all" selects every customer; the others would collide with the names of our own
# stacks (PhiExchange-<slug>): the account's, the log archive's and the pipelines'.
RESERVED_SLUGS = frozenset({
    "all", "audit", "access", "log-archive",
    *(naming.pipeline_stack_name(n).removeprefix(naming.STACK_NAME_PREFIX)
      for n in range(1, naming.MAX_PIPELINES + 1))})
MAX_FILE_BYTES = 64 * 1024
# Sanity bounds; the binding limits are AWS's policy sizes, checked on the synthesized policies
# (stacks/policy_limits.py).
MAX_PRINCIPALS = 100
MAX_SOURCE_CIDRS = 200
MAX_CONTACTS = 20


@dataclass(frozen=True)
class Retention:
    """Lifecycle of a customer bucket.

    ``noncurrent_version_days`` (default 90): overwritten or deleted versions of ``outbound/``
    files are kept this long, so an accidental overwrite can be recovered. (Originals under
    ``inbound/`` are evidence: kept ``phi_core.defaults.EVIDENCE_RETENTION_DAYS``.)
    ``abort_incomplete_multipart_days`` (default 7): parts of an upload never completed are
    removed after this many days (long enough for the transfer client to resume).
    """

    noncurrent_version_days: int = defaults.NONCURRENT_VERSION_DAYS
    abort_incomplete_multipart_days: int = defaults.ABORT_INCOMPLETE_MULTIPART_DAYS


@dataclass(frozen=True)
class Rotation:
    """Access-key rotation for ``iam-user`` partners.

    ``interval_days`` (default 365): Secrets Manager rotates the key this often.
    ``grace_days`` (default 14): the previous key stays active this long after a rotation.
    ``delete_after_days`` (default 30): the deactivated previous key is deleted this long after
    the grace period ends.
    """

    interval_days: int = defaults.ROTATION_INTERVAL_DAYS
    grace_days: int = defaults.GRACE_DAYS
    delete_after_days: int = defaults.DELETE_AFTER_DAYS


# An opt-out of the malware gate must say why, in words an auditor can check.
MIN_OPT_OUT_REASON = 20
MAX_OPT_OUT_REASON = 500


@dataclass(frozen=True)
class MalwareScan:
    """The malware gate of a customer that sends inbound (``[malware_scan]``).

    ``enabled`` (default true): GuardDuty Malware Protection for S3 scans every new object
    under ``inbound/`` and the importer loads only what it found clean. ``reason``: required
    when ``enabled = false`` (20 to 500 printable characters), refused otherwise; it is shown
    wherever the opt-out is (the stack's description, the receipts' scan result).
    """

    enabled: bool = True
    reason: str = ""


@dataclass(frozen=True)
class RolesAnywhere:
    """The partner's certificate authority and the certificates it may use
    (``[roles_anywhere]``, with ``access = "roles-anywhere"``).

    ``ca_bundle``: the PEM of the CA certificate(s) the trust anchor trusts, from
    ``ca_bundle_file`` (a ``.pem`` file next to the customer's file; ``ca_file`` says which)
    or inline as ``ca_bundle``. ``subject``: the attributes every certificate of the partner
    must carry in its subject (at least ``CN``), required by the role's trust policy.
    ``certificates``: what the bundle holds, read by :mod:`stacks.certificates`.
    """

    ca_bundle: str
    subject: tuple[tuple[str, str], ...]
    certificates: tuple[certificates.CaCertificate, ...]
    ca_file: str = ""

    @property
    def ca_expires(self) -> datetime:
        """When the last CA of the bundle expires: the day the partner's access ends unless a
        successor is registered and deployed before (in a rollover the old CA expires first,
        its successor still trusted)."""
        return max(c.not_after for c in self.certificates)


# A CA bundle file named by the registry: a plain name next to the customer's file.
_PEM_FILE = re.compile(r"[a-z0-9][a-z0-9._-]{0,60}\.pem")
MAX_PEM_FILE_BYTES = 16 * 1024


@dataclass(frozen=True)
class CustomerConfig:
    """Everything a customer *is*. Built only by :func:`parse_customer`, which validates it."""

    slug: str
    access: AccessMode
    contacts: tuple[str, ...]
    display_name: str = ""
    directions: tuple[Direction, ...] = (Direction.INBOUND, Direction.OUTBOUND)
    partner_principals: tuple[str, ...] = ()
    external_id: str | None = None
    allowed_source_ips: tuple[str, ...] = ()
    retention: Retention = field(default_factory=Retention)
    rotation: Rotation | None = None
    offboarded: bool = False
    malware_scan: MalwareScan = field(default_factory=MalwareScan)
    account: str | None = None  # the exchange account's label in accounts.toml (placement)
    roles_anywhere: RolesAnywhere | None = None
    source_file: str = ""

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(d.prefix for d in self.directions)

    @property
    def scanned(self) -> bool:
        """Whether GuardDuty scans this customer's inbound files (it sends inbound, is not
        offboarded, and has not opted out)."""
        return (self.allows(Direction.INBOUND) and not self.offboarded
                and self.malware_scan.enabled)

    def allows(self, direction: Direction) -> bool:
        return direction in self.directions

    @property
    def placed(self) -> placement.Placed:
        """This customer as placement counts it: where it asks to be, what quotas it uses."""
        footprint = placement.customer_footprint(
            access=self.access, sends_inbound=self.allows(Direction.INBOUND),
            scanned=self.scanned, offboarded=self.offboarded)
        return placement.Placed(self.slug, self.account, footprint, self.source_file)


class RegistryError(Exception):
    """One or more registry problems; ``problems`` holds one ``file: field: rule`` line each."""

    def __init__(self, problems: Sequence[str], *, subject: str = "customer registry"):
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{subject}: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


_PLAIN_FIELD = re.compile(r"[A-Za-z0-9_.()\[\]-]+")


class _Problems:
    """Collects problems for one file instead of stopping at the first."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, field_name: str, rule: str) -> None:
        # A field name can come from the file (an unknown key): quote any that is not plain,
        # so a line break or an empty name cannot break the one-line format.
        shown = field_name if _PLAIN_FIELD.fullmatch(field_name) else repr(field_name)
        self.items.append(f"{self.source}: {shown}: {rule}")


_TOP_LEVEL_FIELDS = {
    "slug",
    "display_name",
    "access",
    "directions",
    "partner_principals",
    "external_id",
    "allowed_source_ips",
    "contacts",
    "retention",
    "rotation",
    "offboarded",
    "malware_scan",
    "account",
    "roles_anywhere",
}

# Reads a file named by the registry, next to the customer's file (None: nothing to read
# from, e.g. a registry entry parsed from memory).
ReadBeside = Callable[[str], str]


def parse_customer(data: Mapping[str, Any], *, source: str,
                   read_beside: ReadBeside | None = None,
                   now: datetime | None = None) -> CustomerConfig:
    """Validate one customer's parsed TOML; raise :class:`RegistryError` with every problem.
    ``read_beside`` reads a file the entry names (a CA bundle); ``now`` (default: the clock)
    is when certificates must be valid."""
    problems = _Problems(source)
    for unknown in sorted(set(data) - _TOP_LEVEL_FIELDS):
        problems.add(unknown, "unknown field (check the spelling; allowed: "
                     + ", ".join(sorted(_TOP_LEVEL_FIELDS)) + ")")

    slug = _slug(data.get("slug"), problems)
    if slug and Path(source).suffix == ".toml" and Path(source).stem != slug:
        problems.add("slug", f"must match the file name '{Path(source).name}' "
                     f"(expected slug '{Path(source).stem}' or file '{slug}.toml')")

    display_name = _optional_str(data, "display_name", problems, max_len=128) or ""
    access = _access(data.get("access"), problems)
    directions = _directions(data.get("directions", ["inbound", "outbound"]), problems)
    principals = _principals(data.get("partner_principals"), access, problems)
    external_id = _external_id(data.get("external_id"), access, problems)
    cidrs = _cidrs(data.get("allowed_source_ips", []), problems)
    contacts = _contacts(data.get("contacts"), problems)
    retention = _retention(data.get("retention", {}), problems)
    rotation = _rotation(data.get("rotation"), access, problems)
    offboarded = data.get("offboarded", False)
    if not isinstance(offboarded, bool):
        problems.add("offboarded", f"must be true or false (got {offboarded!r})")
        offboarded = False

    malware_scan = _malware_scan(data.get("malware_scan"), directions, problems)
    roles_anywhere = _roles_anywhere(data.get("roles_anywhere"), access, problems,
                                     read_beside, now, offboarded is True)
    account = data.get("account")
    if account is not None and not (isinstance(account, str) and identifiers.is_slug(account)):
        problems.add("account", "must be the label of an exchange account in "
                     f"{placement.ACCOUNTS_FILE} (lowercase letters, digits, hyphens)")
        account = None

    if problems.items:
        raise RegistryError(problems.items)
    assert slug is not None and access is not None and retention is not None
    return CustomerConfig(
        slug=slug,
        display_name=display_name,
        access=access,
        directions=directions,
        partner_principals=principals,
        external_id=external_id,
        allowed_source_ips=cidrs,
        contacts=contacts,
        retention=retention,
        rotation=rotation,
        offboarded=offboarded,
        malware_scan=malware_scan,
        account=account,
        roles_anywhere=roles_anywhere,
        source_file=source,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return toml_files.read_toml(path, max_bytes=MAX_FILE_BYTES, too_large=(
            "; a customer file is a few lines of settings"))
    except toml_files.UnreadableFile as err:
        raise RegistryError([err.line]) from None


def load_customer_file(path: Path) -> CustomerConfig:
    """Read and validate one registry file."""
    return parse_customer(_read_toml(path), source=str(path), read_beside=_beside(path))


def _beside(path: Path) -> ReadBeside:
    """Reads a file the customer file at ``path`` names, from the same directory only."""
    def read(name: str) -> str:
        target = path.parent / name
        if target.stat().st_size > MAX_PEM_FILE_BYTES:
            raise ValueError(f"is over {MAX_PEM_FILE_BYTES // 1024} KiB")
        return target.read_text(encoding="ascii")
    return read


@dataclass(frozen=True)
class RegistryRead:
    """Every customer file of a registry read: the healthy customers, and one line per problem
    (``file: field: rule``) of the files that are not."""

    customers: dict[str, CustomerConfig]
    problems: tuple[str, ...]
    files: dict[str, str]  # slug, as each file writes it (or its file name) -> that file

    def problems_of(self, slug: str) -> list[str]:
        """The problems that stop ``slug`` from being used: its own file's, and a second file
        claiming the same slug."""
        own = self.files.get(slug)
        return [p for p in self.problems
                if (own and p.startswith(f"{own}: ")) or f"slug: '{slug}' is already" in p]


def read_registry(directory: Path) -> RegistryRead:
    """Read every ``*.toml`` under ``directory``, keeping the healthy customers and every
    problem of the others. Raises :class:`RegistryError` only when there is no registry."""
    problems: list[str] = []
    customers: dict[str, CustomerConfig] = {}
    claimed: dict[str, Path] = {}  # slug as written -> first file that wrote it
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise RegistryError([f"{directory}: (registry): no customer files (*.toml) found"])
    by_slug: dict[str, str] = {}
    for path in files:
        by_slug.setdefault(path.stem, str(path))
        try:
            data = _read_toml(path)
            slug = data.get("slug")
            if isinstance(slug, str):
                if slug in claimed:
                    problems.append(f"{path}: slug: '{slug}' is already registered by "
                                    f"{claimed[slug]}")
                claimed.setdefault(slug, path)
                by_slug[slug] = str(claimed[slug])
            config = parse_customer(data, source=str(path), read_beside=_beside(path))
        except RegistryError as err:
            problems.extend(err.problems)
            continue
        customers.setdefault(config.slug, config)
    for slug, problem in _name_collisions(customers):
        problems.append(problem)
        customers.pop(slug, None)
    return RegistryRead(customers=customers, problems=tuple(problems), files=by_slug)


def _name_collisions(customers: Mapping[str, CustomerConfig]) -> list[tuple[str, str]]:
    """(slug, problem) for each customer whose stack would create a name another customer's
    already has (``acme-logs``'s data bucket is ``acme``'s access-log bucket): the later slug,
    in sorted order, is refused."""
    owners: dict[str, tuple[str, str]] = {}  # name -> (slug, what)
    found = []
    for slug in sorted(customers):
        for name, what in naming.physical_names(slug).items():
            if name in owners:
                other, other_what = owners[name]
                found.append((slug, f"{customers[slug].source_file}: slug: its {what} would be "
                                    f"named like {other}'s {other_what} ({name}); choose "
                                    "another slug"))
                break
        else:
            for name, what in naming.physical_names(slug).items():
                owners[name] = (slug, what)
    return found


def load_registry(directory: Path) -> dict[str, CustomerConfig]:
    """Load every ``*.toml`` under ``directory``; one error lists every problem in every file.
    What synthesizing every customer and CI use: one broken file stops them."""
    read = read_registry(directory)
    if read.problems:
        raise RegistryError(read.problems)
    return read.customers


def load_one_customer(directory: Path, slug: str, *,
                      option: str = "customer") -> tuple[CustomerConfig, list[str]]:
    """The healthy customer ``slug`` and, as warnings, the problems of other files: a command
    about one customer works while another customer's file is broken. Raises
    :class:`RegistryError` when ``slug`` itself is broken or not registered (``option`` names
    where the slug came from, for the message)."""
    return one_customer(read_registry(directory), slug, option=option)


def one_customer(read: RegistryRead, slug: str, *,
                 option: str = "customer") -> tuple[CustomerConfig, list[str]]:
    """:func:`load_one_customer` of a registry already read."""
    own = read.problems_of(slug)
    if own:
        raise RegistryError(own)
    if slug not in read.customers:
        known = ", ".join(sorted(read.customers)) or "(none)"
        raise RegistryError([f"{option}={slug}: customer: not registered; registered "
                             f"customers: {known}"])
    warnings = [f"{problem} (this file is skipped; {slug} is not affected)"
                for problem in read.problems]
    return read.customers[slug], warnings


# --- field validators: each returns a cleaned value (or None) and records problems ---------


def _slug(value: Any, problems: _Problems) -> str | None:
    if value is None:
        problems.add("slug", "required")
        return None
    if not isinstance(value, str):
        problems.add("slug", f"must be a string (got {type(value).__name__})")
        return None
    if not (2 <= len(value) <= naming.MAX_SLUG_LENGTH):
        problems.add("slug", f"must be 2 to {naming.MAX_SLUG_LENGTH} characters "
                     f"(got {len(value)}); every AWS name is derived from it")
        return None
    if not identifiers.is_slug(value):
        problems.add("slug", "must be lower-case letters, digits and single hyphens, starting "
                     f"with a letter and not ending with a hyphen (got {value!r})")
        return None
    if value in RESERVED_SLUGS:
        problems.add("slug", f"'{value}' is reserved")
        return None
    return value


def _optional_str(data: Mapping[str, Any], name: str, problems: _Problems,
                  *, max_len: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(name, f"must be a string (got {type(value).__name__})")
        return None
    if len(value) > max_len or any(ord(ch) < 32 for ch in value):
        problems.add(name, f"must be at most {max_len} printable characters")
        return None
    return value


def _access(value: Any, problems: _Problems) -> AccessMode | None:
    allowed = ", ".join(m.value for m in AccessMode)
    if value is None:
        problems.add("access", f"required; one of: {allowed}")
        return None
    try:
        return AccessMode(value)
    except (ValueError, TypeError):
        problems.add("access", f"must be one of: {allowed} (got {value!r})")
        return None


def _string_list(value: Any, name: str, problems: _Problems, *, max_items: int) -> list[str] | None:
    if not isinstance(value, list):
        problems.add(name, f"must be a list of strings (got {type(value).__name__})")
        return None
    if len(value) > max_items:
        problems.add(name, f"at most {max_items} entries (got {len(value)})")
        return None
    strings = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            problems.add(f"{name}[{index}]", f"must be a string (got {type(item).__name__})")
        else:
            strings.append(item)
    if len(set(strings)) != len(strings):
        problems.add(name, "contains duplicates")
    return strings if len(strings) == len(value) else None


def _directions(value: Any, problems: _Problems) -> tuple[Direction, ...]:
    items = _string_list(value, "directions", problems, max_items=2)
    if items is None:
        return ()
    if not items:
        problems.add("directions", "must name at least one of: inbound, outbound")
        return ()
    directions = []
    for index, item in enumerate(items):
        try:
            directions.append(Direction(item))
        except ValueError:
            problems.add(f"directions[{index}]", f"must be 'inbound' or 'outbound' (got {item!r})")
    # Canonical order, so the same set of directions always yields the same template.
    return tuple(d for d in Direction if d in directions)


def _principals(value: Any, access: AccessMode | None, problems: _Problems) -> tuple[str, ...]:
    if access in (AccessMode.IAM_USER, AccessMode.ROLES_ANYWHERE):
        if value is not None:
            problems.add("partner_principals", f"not allowed with access = '{access}' "
                         "(the partner signs in as a principal we create; remove this field "
                         "or change access)")
        return ()
    if value is None:
        if access is not None:
            problems.add("partner_principals", f"required with access = '{access.value}': "
                         "the partner's IAM role/user ARNs or 12-digit account ids")
        return ()
    items = _string_list(value, "partner_principals", problems, max_items=MAX_PRINCIPALS)
    if items is None:
        return ()
    if not items:
        problems.add("partner_principals", "must list at least one principal")
    for index, item in enumerate(items):
        where = f"partner_principals[{index}]"
        if "*" in item or "?" in item:
            problems.add(where, f"wildcards are not allowed (got {item!r})")
        elif not (identifiers.is_account_id(item) or identifiers.is_principal_arn(item)):
            problems.add(where, "must be an IAM role or user ARN "
                         "(arn:aws:iam::123456789012:role/name) or a 12-digit account id "
                         f"(got {item!r})")
    return tuple(items)


def _external_id(value: Any, access: AccessMode | None, problems: _Problems) -> str | None:
    if access is not AccessMode.ASSUME_ROLE:
        if value is not None:
            problems.add("external_id", "only allowed with access = 'assume-role'")
        return None
    if value is None:
        problems.add("external_id", "required with access = 'assume-role' "
                     "(16 to 1224 characters, unique to this partner)")
        return None
    if not isinstance(value, str):
        problems.add("external_id", f"must be a string (got {type(value).__name__})")
        return None
    if not (16 <= len(value) <= 1224) or not identifiers.is_external_id(value):
        problems.add("external_id", "must be 16 to 1224 characters of letters, digits and "
                     "+=,.@:/-_ (a short or guessable external id does not protect the role)")
        return None
    return value


def _roles_anywhere(value: Any, access: AccessMode | None, problems: _Problems,
                    read_beside: ReadBeside | None, now: datetime | None,
                    offboarded: bool) -> RolesAnywhere | None:
    name = "roles_anywhere"
    if access is not AccessMode.ROLES_ANYWHERE:
        if value is not None:
            problems.add(name, "only allowed with access = 'roles-anywhere'")
        return None
    if value is None:
        problems.add(name, "required with access = 'roles-anywhere': a [roles_anywhere] table "
                     "with the partner's CA (ca_bundle_file or ca_bundle) and the certificate "
                     "subject (subject = { CN = \"...\" })")
        return None
    table = _table(value, name, ("ca_bundle_file", "ca_bundle", "subject"), problems)
    if table is None:
        return None
    pem, ca_file = _ca_bundle_text(table, problems, read_beside)
    subject = table.get("subject")
    if not isinstance(subject, dict):
        problems.add(f"{name}.subject", "required: a table of the subject attributes every "
                     "certificate of the partner carries, e.g. { CN = \"acme-transfer\", "
                     "OU = \"Claims\" }")
        subject = None
    subject_problems = certificates.subject_problems(subject) if subject is not None else []
    for attribute, rule in subject_problems:
        problems.add(f"{name}.subject.{attribute}", rule)
    if pem is None:
        return None
    where = f"{name}.{'ca_bundle_file' if ca_file else 'ca_bundle'}"
    # An offboarded partner's CA may expire: nothing trusts it any more.
    found, bundle_problems = certificates.read_ca_bundle(pem, now=now,
                                                         check_time=not offboarded)
    for problem in bundle_problems:
        problems.add(where, f"{ca_file + ' ' if ca_file else ''}{problem}")
    if bundle_problems or subject is None or subject_problems:
        return None
    return RolesAnywhere(ca_bundle=pem, subject=tuple(sorted(subject.items())),
                         certificates=tuple(found), ca_file=ca_file)


def _ca_bundle_text(table: Mapping[str, Any], problems: _Problems,
                    read_beside: ReadBeside | None) -> tuple[str | None, str]:
    """The bundle's PEM and the file it came from ("" inline); exactly one source."""
    file_name, inline = table.get("ca_bundle_file"), table.get("ca_bundle")
    if (file_name is None) == (inline is None):
        problems.add("roles_anywhere", "exactly one of ca_bundle_file (a .pem file next to "
                     "this file) or ca_bundle (the PEM inline) is required")
        return None, ""
    if inline is not None:
        if not isinstance(inline, str):
            problems.add("roles_anywhere.ca_bundle", "must be a string (the PEM text)")
            return None, ""
        return inline, ""
    where = "roles_anywhere.ca_bundle_file"
    if not isinstance(file_name, str) or not _PEM_FILE.fullmatch(file_name):
        problems.add(where, "must be the name of a .pem file in the registry's directory "
                     f"(lower-case, no path; got {file_name!r})")
        return None, ""
    if read_beside is None:
        problems.add(where, f"{file_name}: cannot be read (no registry directory)")
        return None, ""
    try:
        return read_beside(file_name), file_name
    except FileNotFoundError:
        problems.add(where, f"{file_name}: no such file next to the customer's file")
    except (OSError, ValueError) as error:
        problems.add(where, f"{file_name}: cannot be read as ASCII PEM ({error})")
    return None, ""


def _cidrs(value: Any, problems: _Problems) -> tuple[str, ...]:
    items = _string_list(value, "allowed_source_ips", problems, max_items=MAX_SOURCE_CIDRS)
    if items is None:
        return ()
    cleaned = []
    for index, item in enumerate(items):
        where = f"allowed_source_ips[{index}]"
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError as err:
            problems.add(where, f"must be a CIDR such as 203.0.113.0/24 with no host bits set "
                         f"({err})")
            continue
        if network.prefixlen == 0:
            problems.add(where, f"{item} allows every address; omit allowed_source_ips instead")
            continue
        cleaned.append(str(network))
    return tuple(cleaned)


def _contacts(value: Any, problems: _Problems) -> tuple[str, ...]:
    if value is None:
        problems.add("contacts", "required: at least one e-mail address for notices")
        return ()
    items = _string_list(value, "contacts", problems, max_items=MAX_CONTACTS)
    if items is None:
        return ()
    if not items:
        problems.add("contacts", "must list at least one e-mail address")
    for index, item in enumerate(items):
        if not identifiers.is_email(item) or len(item) > 254:
            problems.add(f"contacts[{index}]", f"must be an e-mail address (got {item!r})")
    return tuple(items)


def _table(value: Any, name: str, allowed: Iterable[str], problems: _Problems) -> dict | None:
    if not isinstance(value, dict):
        problems.add(name, f"must be a table ([{name}]) (got {type(value).__name__})")
        return None
    for unknown in sorted(set(value) - set(allowed)):
        problems.add(f"{name}.{unknown}", "unknown field (allowed: "
                     + ", ".join(sorted(allowed)) + ")")
    return value


def _int_in_range(table: Mapping[str, Any], name: str, key: str, default: int,
                  low: int, high: int, problems: _Problems) -> int:
    value = table.get(key, default)
    # bool is an int subclass in Python; `true` is not a number of days.
    if not isinstance(value, int) or isinstance(value, bool):
        problems.add(f"{name}.{key}", f"must be a whole number (got {type(value).__name__})")
        return default
    if not (low <= value <= high):
        problems.add(f"{name}.{key}", f"must be between {low} and {high} (got {value})")
        return default
    return value


def _retention(value: Any, problems: _Problems) -> Retention | None:
    fields = ("noncurrent_version_days", "abort_incomplete_multipart_days")
    table = _table(value, "retention", fields, problems)
    if table is None:
        return Retention()
    defaults = Retention()
    return Retention(
        noncurrent_version_days=_int_in_range(
            table, "retention", "noncurrent_version_days",
            defaults.noncurrent_version_days, 1, 3650, problems),
        abort_incomplete_multipart_days=_int_in_range(
            table, "retention", "abort_incomplete_multipart_days",
            defaults.abort_incomplete_multipart_days, 1, 30, problems),
    )


def _rotation(value: Any, access: AccessMode | None, problems: _Problems) -> Rotation | None:
    if access is not AccessMode.IAM_USER:
        if value is not None:
            problems.add("rotation", "only allowed with access = 'iam-user' "
                         "(other modes hold no access key of ours)")
        return None
    if value is None:
        return Rotation()
    table = _table(value, "rotation", ("interval_days", "grace_days", "delete_after_days"),
                   problems)
    if table is None:
        return Rotation()
    defaults = Rotation()
    rotation = Rotation(
        interval_days=_int_in_range(table, "rotation", "interval_days",
                                    defaults.interval_days, 7, 365, problems),
        grace_days=_int_in_range(table, "rotation", "grace_days",
                                 defaults.grace_days, 1, 90, problems),
        delete_after_days=_int_in_range(table, "rotation", "delete_after_days",
                                        defaults.delete_after_days, 1, 365, problems),
    )
    if rotation.grace_days >= rotation.interval_days:
        problems.add("rotation.grace_days", f"must be shorter than rotation.interval_days "
                     f"({rotation.grace_days} >= {rotation.interval_days})")
    return rotation


def _malware_scan(value: Any, directions: tuple[Direction, ...],
                  problems: _Problems) -> MalwareScan:
    if value is None:
        return MalwareScan()
    table = _table(value, "malware_scan", ("enabled", "reason"), problems)
    if table is None:
        return MalwareScan()
    if Direction.INBOUND not in directions and directions:
        problems.add("malware_scan", "only allowed when the customer sends inbound (nothing "
                     "else is scanned); remove [malware_scan]")
        return MalwareScan()
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add("malware_scan.enabled", f"must be true or false (got {enabled!r})")
        return MalwareScan()
    reason = table.get("reason")
    if enabled:
        if reason is not None:
            problems.add("malware_scan.reason", "only allowed with enabled = false (the reason "
                         "for the opt-out)")
        return MalwareScan()
    if reason is None:
        problems.add("malware_scan.reason", "required with enabled = false: why this "
                     f"partner's files may skip the malware gate ({MIN_OPT_OUT_REASON} to "
                     f"{MAX_OPT_OUT_REASON} characters)")
        return MalwareScan()
    if not isinstance(reason, str):
        problems.add("malware_scan.reason", f"must be a string (got {type(reason).__name__})")
        return MalwareScan()
    if (not MIN_OPT_OUT_REASON <= len(reason.strip()) <= MAX_OPT_OUT_REASON
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in reason)):
        problems.add("malware_scan.reason", f"must be {MIN_OPT_OUT_REASON} to "
                     f"{MAX_OPT_OUT_REASON} printable characters on one line (got "
                     f"{len(reason)})")
        return MalwareScan()
    return MalwareScan(enabled=False, reason=" ".join(reason.split()))


# --- the audit stack's settings (cdk.json context, not the registry) ------------------------


class LockMode(enum.StrEnum):
    COMPLIANCE = "compliance"  # nobody, not even the account root, can delete before expiry
    GOVERNANCE = "governance"  # principals with s3:BypassGovernanceRetention can


MIN_AUDIT_RETENTION_DAYS = defaults.EVIDENCE_RETENTION_DAYS


@dataclass(frozen=True)
class AuditSettings:
    """Settings of the audit stack.

    ``retention_days`` (default 2192, six years; at least that): Object Lock retention of
    every trail log file. ``lock_mode`` (default compliance): compliance means nobody can
    delete or shorten the lock before it expires; governance lets principals with
    ``s3:BypassGovernanceRetention`` do so (use only in sandbox accounts).
    ``security_contacts`` (context ``security_contacts``, at least one e-mail address): who is
    told when someone tampers with evidence or access, or uses break-glass.
    """

    retention_days: int = MIN_AUDIT_RETENTION_DAYS
    lock_mode: LockMode = LockMode.COMPLIANCE
    security_contacts: tuple[str, ...] = ()


def parse_audit_settings(context: Mapping[str, Any], *, source: str = "cdk.json") -> AuditSettings:
    """Validate the ``audit_retention_days``, ``audit_lock_mode`` and ``security_contacts``
    context values."""
    problems = _Problems(source)
    retention = _int_in_range(context, "context", "audit_retention_days",
                              MIN_AUDIT_RETENTION_DAYS, MIN_AUDIT_RETENTION_DAYS, 36500, problems)
    mode_value = context.get("audit_lock_mode", LockMode.COMPLIANCE.value)
    try:
        mode = LockMode(mode_value)
    except ValueError:
        problems.add("context.audit_lock_mode",
                     f"must be 'compliance' or 'governance' (got {mode_value!r})")
        mode = LockMode.COMPLIANCE
    contacts = _contacts(context.get("security_contacts"), _Renamed(problems, "context.security_"))
    if problems.items:
        raise RegistryError(problems.items, subject="audit settings")
    return AuditSettings(retention_days=retention, lock_mode=mode, security_contacts=contacts)


class _Renamed(_Problems):
    """Problems of a shared validator reported under a prefixed field name."""

    def __init__(self, inner: _Problems, prefix: str) -> None:
        super().__init__(inner.source)
        self.items = inner.items
        self._prefix = prefix

    def add(self, field_name: str, rule: str) -> None:
        super().add(self._prefix + field_name, rule)
