from __future__ import annotations

import pytest

from messages import chat


def test_unlinked_chat_is_told_how_to_link() -> None:
    text = chat.help_text(None, None)
    assert chat.NOT_LINKED in text
    assert "<code>/start KOD</code>" in text


@pytest.mark.parametrize(
    "kind", ["health_centre", "school", "preschool", "social_services", "management"]
)
def test_help_names_the_organisation_and_the_button(kind: str) -> None:
    text = chat.help_text(kind, "Lugnvik <&>")
    assert "Lugnvik &lt;&amp;&gt;" in text
    assert "<&>" not in text
    assert "Mottaget" in text


def test_reception_unit_help_does_not_ask_it_to_acknowledge_its_copies() -> None:
    text = chat.help_text("reception_unit", "Mottagningsenheten")
    assert "behöver inte bekräftas" in text
    assert "Tryck på" not in text


def test_health_centre_help_mentions_the_five_working_days() -> None:
    assert "fem arbetsdagar" in chat.help_text("health_centre", "Lugnvik")


def test_linking_replies() -> None:
    assert "<b>Lugnviks skola</b>" in chat.linked("Lugnviks skola")
    assert "&lt;i&gt;" in chat.linked("<i>")
    for reply in (chat.INVALID_CODE, chat.CODE_USED, chat.CODE_EXPIRED):
        assert "mottagningsenhet" in reply
    assert chat.NOT_LINKED == "Den här chatten är inte kopplad till någon organisation."


def test_acknowledgement_replies() -> None:
    assert chat.ack_recorded("Lugnviks skola", "OSD-2026-0001") == (
        "Mottaget registrerat för Lugnviks skola, ärende OSD-2026-0001."
    )
    assert chat.ack_recorded("A & B") == "Mottaget registrerat för A &amp; B."
    assert "Redan bekräftat" in chat.already_acknowledged("Lugnviks skola")
    assert "nyare meddelande" in chat.STALE_VERSION
    assert "inställd" in chat.CASE_CANCELLED
    assert chat.NOT_A_RECIPIENT == "Er organisation är inte mottagare i det här ärendet."
    assert chat.SOMETHING_WENT_WRONG == "Något gick fel, försök igen om en stund."


def test_plain_text_for_button_answers() -> None:
    assert chat.plain_text(chat.ack_recorded("A & B")) == "Mottaget registrerat för A & B."
    assert chat.plain_text(chat.linked("<X>")).startswith(
        "Klart! Den här chatten är nu kopplad till <X>."
    )
    assert len(chat.plain_text("x" * 500)) == 200


def test_supervisor_chat_is_told_it_gets_escalations() -> None:
    assert "Som chef" in chat.linked("Lugnviks skola", "supervisor")
    assert "Som chef" not in chat.linked("Lugnviks skola", "member")


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("recorded", "Mottaget registrerat för A & B, ärende OSD-2026-0001."),
        ("already", "Redan bekräftat för A & B, ärende OSD-2026-0001."),
        ("stale", chat.STALE_VERSION),
        ("cancelled", chat.CASE_CANCELLED),
        ("not_recipient", chat.NOT_A_RECIPIENT),
        ("something else", chat.SOMETHING_WENT_WRONG),
    ],
)
def test_button_answer_is_plain_text_by_outcome(outcome: str, expected: str) -> None:
    assert chat.ack_reply(outcome, "OSD-2026-0001", "A & B") == expected


def test_button_answers_fit_a_callback_answer() -> None:
    assert len(chat.ack_reply("recorded", "OSD-2026-0001", "x" * 500)) == 200
    for text in (chat.BUTTON_INVALID, chat.NOT_LINKED, chat.STALE_VERSION, chat.CASE_CANCELLED):
        assert len(text) <= 200
        assert "<" not in text


def test_one_reply_for_any_unusable_invite_code() -> None:
    assert "ny kod" in chat.INVITE_INVALID
