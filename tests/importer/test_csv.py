"""open_csv: the strict reader. Good files yield rows keyed by a header; every malformation is
refused with the line it is on."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.errors import MalformedFile
from importer.store import open_csv


def rows_of(tmp_path: Path, data: bytes) -> tuple[list[str], list[list[str]]]:
    path = tmp_path / "file.csv"
    path.write_bytes(data)
    with open_csv(path) as (header, rows):
        return header, list(rows)


def test_well_formed_file_yields_header_and_rows(tmp_path: Path) -> None:
    header, rows = rows_of(tmp_path, b'id,name,note\r\n1,Ann,"a, b"\r\n2,Bo,"two\nlines"\r\n')
    assert header == ["id", "name", "note"]
    assert rows == [["1", "Ann", "a, b"], ["2", "Bo", "two\nlines"]]


def test_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    header, _ = rows_of(tmp_path, "\ufeffid,name\n1,Zoë\n".encode())
    assert header == ["id", "name"]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    assert rows_of(tmp_path, b"id,name\n") == (["id", "name"], [])


@pytest.mark.parametrize("data, problem", [
    (b"", "empty file"),
    (b"id,,name\n1,2,3\n", "line 1: the header has an empty column name"),
    (b"id,name,id\n1,2,3\n", "duplicate column names id"),
    (b"id,name\n1,Ann\n2\n", "line 3: 1 fields, the header has 2"),
    (b"id,name\n1,Ann\n\n2,Bo\n", "line 3: 0 fields"),
    (b"id,name\n1,Ann,extra\n", "line 2: 3 fields"),
    (b"id,name\n1,\xff\xfe\n", "not UTF-8"),
    (b'id,name\n1,"unclosed\n', "line 2"),
    (b'id,name\n1,"a"b\n', "line 2"),
    (b"id,name\n1,a\x00b\n", "line 2"),
])
def test_malformed_file_is_refused_naming_the_line(
        tmp_path: Path, data: bytes, problem: str) -> None:
    with pytest.raises(MalformedFile) as caught:
        rows_of(tmp_path, data)
    assert problem in caught.value.reason
