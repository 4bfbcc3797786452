"""Which role a board sign-in mailed to an address gives: the organisation's mailbox a member,
an address the directory lists under `supervisor_emails` the organisation's supervisor."""

from __future__ import annotations

from pathlib import Path

from bot.domain.directory import Directory, Municipality, Organisation
from bot.runtime.directory_file import check_directory, load_directory

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "directory.example.toml"

SMALL = """
[region]
name = "Testlän"

[[municipalities]]
id = "alfa"
name = "Alfa"
code = "ALF"

[[organisations]]
id = "alfa-skola"
municipality = "alfa"
kind = "school"
name = "Alfaskolan"
email = "skola@alfa.example.se"
supervisor_emails = {supervisors}
"""


def test_the_example_directory_gives_the_rektor_the_supervisor_role() -> None:
    directory = load_directory(EXAMPLE)
    assert directory.sign_ins_for("skola@ostersund.example.se") == (("ostersund-skola", "member"),)
    assert directory.sign_ins_for(" Rektor.Lugnvik@OSTERSUND.example.se ") == (
        ("ostersund-skola", "supervisor"),
    )
    assert directory.sign_ins_for("nobody@example.se") == ()
    assert directory.sign_ins_for("") == ()


def test_one_address_can_sign_in_to_several_organisations_each_in_its_role() -> None:
    school = Organisation(
        id="alfa-skola",
        municipality="alfa",
        kind="school",
        name="Alfaskolan",
        email="skola@alfa.example.se",
        supervisor_emails=("chef@alfa.example.se",),
    )
    preschool = Organisation(
        id="alfa-forskola",
        municipality="alfa",
        kind="preschool",
        name="Alfa förskola",
        email="chef@alfa.example.se",
    )
    directory = Directory(
        region_name="Testlän",
        municipalities={"alfa": Municipality(id="alfa", name="Alfa", code="ALF")},
        organisations={school.id: school, preschool.id: preschool},
    )
    assert directory.sign_ins_for("chef@alfa.example.se") == (
        ("alfa-skola", "supervisor"),
        ("alfa-forskola", "member"),
    )
    assert school.role_of_address("skola@alfa.example.se") == "member"
    assert preschool.role_of_address("skola@alfa.example.se") is None


def test_a_supervisor_address_that_is_not_one_plain_address_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        SMALL.format(supervisors='["Rektor <rektor@alfa.example.se>", "ok@alfa.example.se"]'),
        encoding="utf-8",
    )
    errors = check_directory(path)
    assert any("supervisor_emails" in e and "Rektor <rektor@" in e for e in errors), errors
