"""``schema_version`` checks shared by the manifest, the training summary and the bench report."""

from __future__ import annotations

import pytest

from storyedge.errors import UserError
from storyedge.schema import check_schema, known_fields, major_of


def test_any_minor_of_the_major_is_read() -> None:
    for found in ("1.0", "1.9", "1.12"):
        check_schema({"schema_version": found, "backends": []}, "1.0", "bench report", "r.json", marks=("backends",))
    assert major_of("12.3") == 12


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "r.json: not a storyedge bench report (expected a JSON object)"),
        ({"files": [], "schema_version": "2.0"}, "r.json: not a storyedge bench report (no 'backends')"),
        ({"backends": []}, "r.json: not a storyedge bench report (no schema_version)"),
        ({"backends": [], "schema_version": 1}, "r.json: bench report schema_version 1 is from an older storyedge"),
        ({"backends": [], "schema_version": "2.0"}, "r.json: bench report schema_version 2.0 is not readable"),
    ],
)
def test_foreign_files_and_other_majors_are_refused_in_one_line(data: object, message: str) -> None:
    with pytest.raises(UserError) as info:
        check_schema(data, "1.0", "bench report", "r.json", marks=("backends",))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_known_fields_drops_what_a_newer_minor_added() -> None:
    from dataclasses import dataclass

    @dataclass
    class Thing:
        a: int
        b: str = ""

    assert known_fields(Thing, {"a": 1, "b": "x", "added_in_1_1": True}) == {"a": 1, "b": "x"}
