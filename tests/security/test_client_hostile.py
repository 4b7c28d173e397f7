"""Hostile input to the partner's client: object keys, destination names, prefixes, profile
files and command-line arguments. Every input is either accepted within its rules or refused
with one clear line and its exit code; never a traceback, never a write outside the
destination, never a key outside the profile's prefixes. Pure, offline (no server)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from partner_transfer.cli import run
from partner_transfer.errors import ExitCode, TransferError
from partner_transfer.keys import check_key, check_prefix, safe_destination

ALLOWED = ("inbound/",)
# Segments that matter to traversal, mixed with arbitrary text (unicode, spaces, controls).
SEGMENT = st.one_of(
    st.sampled_from(["..", ".", "", "inbound", "outbound", "C:", "a b", "ü", "\\", "x\x00y"]),
    st.text(min_size=0, max_size=12),
)
KEYS = st.lists(SEGMENT, min_size=1, max_size=6).map("/".join) | st.text(max_size=60)
LIMITS = settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])


@LIMITS
@given(KEYS)
def test_an_upload_key_is_inside_the_allowed_prefix_or_refused(key):
    try:
        accepted = check_key(key, ALLOWED, "upload")
    except TransferError as err:
        assert err.code is ExitCode.REFUSED
        assert "\n" not in str(err).strip("\n") or "\n" in key
        return
    assert accepted.startswith("inbound/")
    assert ".." not in accepted.split("/") and not accepted.startswith("/")


@LIMITS
@given(KEYS)
def test_a_prefix_is_normalized_inside_the_allowed_one_or_refused(prefix):
    try:
        norm = check_prefix(prefix, ALLOWED, "upload")
    except TransferError as err:
        assert err.code is ExitCode.REFUSED
        return
    assert norm.startswith("inbound/") and norm.endswith("/")


@LIMITS
@given(KEYS)
def test_a_download_never_lands_outside_the_destination(tmp_path_factory, relative):
    dest = tmp_path_factory.mktemp("dest")
    try:
        target = safe_destination(dest, relative)
    except TransferError as err:
        assert err.code is ExitCode.REFUSED
        return
    except (OSError, ValueError):
        return  # the OS refuses the name itself (e.g. too long): nothing is written
    assert os.path.commonpath([dest.resolve(), target.resolve()]) == str(dest.resolve())


def test_a_symlink_inside_the_destination_is_refused(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "link").symlink_to(outside)
    try:
        safe_destination(dest, "link/file.csv")
    except TransferError as err:
        assert err.code is ExitCode.REFUSED and "symlink" in str(err)
    else:
        raise AssertionError("a download through a symlink was accepted")


def cli(*argv: str) -> tuple[int, str]:
    """Run the CLI in-process; usage errors exit through argparse (SystemExit 2), as the
    console script does."""
    err = io.StringIO()
    try:
        code = run(list(argv), out=Console(file=io.StringIO()),
                   err=Console(file=err, width=400, soft_wrap=True))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, err.getvalue()


PROFILE_TEXT = st.one_of(
    st.text(max_size=300),
    st.builds(lambda k, v: f"{k} = {v}\n", st.text(max_size=20),
              st.sampled_from(['"x"', "1", "true", "[", '"arn:aws:kms:x"', "{}"])),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(PROFILE_TEXT)
def test_a_garbage_profile_is_refused_in_one_line(tmp_path_factory, text):
    profile = tmp_path_factory.mktemp("p") / "profile with spaces ü.toml"
    profile.write_text(text, encoding="utf-8", errors="surrogateescape")
    (profile.parent / "a.csv").write_text("x")
    code, err = cli("upload", "--dry-run", "--profile", str(profile),
                    str(profile.parent / "a.csv"))
    assert code in (ExitCode.CONFIG, ExitCode.USAGE), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=15), max_size=5))
def test_random_arguments_never_raise_a_traceback(argv):
    code, err = cli(*argv)
    assert isinstance(code, int)
    assert "Traceback" not in err


def offline_profile(tmp_path: Path, prefix_line: str) -> Path:
    """A valid profile whose endpoint nothing listens on: a request would fail as a network
    error (exit 9), so a refusal (exit 6) proves the check ran before any request."""
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    profile = tmp_path / "p.toml"
    profile.write_text("\n".join([
        'customer = "acme"', 'bucket = "phi-acme-123456789012-us-east-1"',
        'region = "us-east-1"', 'bucket_owner = "123456789012"', f'kms_key_arn = "{key_arn}"',
        prefix_line, 'endpoint_url = "http://127.0.0.1:9"', ""]))
    return profile


def test_a_download_key_outside_the_profile_is_refused_before_any_request(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHOSTILETEST0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-key-for-tests-only")
    profile = offline_profile(tmp_path, 'outbound_prefix = "outbound/"')
    for key in ("inbound/x.csv", "outbound/../inbound/x.csv", "/outbound/x.csv"):
        code, err = cli("download", "--profile", str(profile), key, str(tmp_path / "d"))
        assert code == ExitCode.REFUSED, (key, err)
        assert not (tmp_path / "d").exists()
    assert Path(profile).exists()


def test_an_upload_outside_the_profile_is_refused_before_any_request(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHOSTILETEST0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-key-for-tests-only")
    profile = offline_profile(tmp_path, 'inbound_prefix = "inbound/"')
    data = tmp_path / "claims ü.csv"
    data.write_text("id\n1\n")
    for to in ("outbound/", "inbound/../outbound/", "/inbound/", ""):
        code, err = cli("upload", "--profile", str(profile), "--to", to, str(data))
        assert code == ExitCode.REFUSED, (to, err)
        assert len(err.strip().splitlines()) == 1
