"""The wording of deadlines: how long someone has waited, what a deadline rests on, and what
happens when it passes (the sentence the case view shows)."""

from __future__ import annotations

from datetime import date, time, timedelta

from messages.dates import swedish_date

_NUMBER_WORDS = ("noll", "en", "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio", "tio")
_ORDINALS = (
    "nollte",
    "första",
    "andra",
    "tredje",
    "fjärde",
    "femte",
    "sjätte",
    "sjunde",
    "åttonde",
    "nionde",
    "tionde",
)

# The one working-day counting rule (bot/domain/deadline_rules.py) as a reader is told it:
# the deadlines, the messages and the follow-up report all say and count it this way.
WORKING_DAY_RULE = (
    "Arbetsdagar räknas från dagen efter den dag beskedet kom: den dagen räknas inte, och inte "
    "heller helger, helgdagar, midsommarafton, julafton och nyårsafton. En frist på fem "
    "arbetsdagar löper ut när kontoret stänger den femte arbetsdagen."
)


def count(n: float, singular: str, plural: str) -> str:
    """ "en arbetsdag", "fem arbetsdagar", "12 arbetsdagar", "1,5 arbetstimmar"."""
    if float(n).is_integer():
        whole = int(n)
        word = _NUMBER_WORDS[whole] if 0 <= whole < len(_NUMBER_WORDS) else str(whole)
        return f"{word} {singular if whole == 1 else plural}"
    return f"{f'{n:g}'.replace('.', ',')} {plural}"


def ordinal(n: int) -> str:
    """ "tredje", "femte"; "12:e" beyond ten."""
    return _ORDINALS[n] if 0 <= n < len(_ORDINALS) else f"{n}:e"


def clock_time(t: time) -> str:
    """ "kl. 10.00"."""
    return f"kl. {t.hour:02d}.{t.minute:02d}"


def working_time(delta: timedelta) -> str:
    """Office time waited: "2 arbetstimmar", "1 arbetstimme och 30 minuter", "45 minuter"."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} {'arbetstimme' if hours == 1 else 'arbetstimmar'}")
    if minutes or not hours:
        parts.append(f"{minutes} {'minut' if minutes == 1 else 'minuter'}")
    return " och ".join(parts)


def ack_basis(reminder_hours: float, escalation_at: time) -> str:
    """What the acknowledgement deadline rests on."""
    return (
        "Enligt överenskommelsen ska mottagandet bekräftas inom "
        f"{count(reminder_hours, 'arbetstimme', 'arbetstimmar')}, och senast "
        f"{clock_time(escalation_at)} nästa arbetsdag."
    )


def booking_basis(days: int) -> str:
    """What the health centre's booking deadline rests on, with how the days are counted."""
    return (
        "Enligt överenskommelsen ska hälsocentralen boka tid för hälsosamtal inom "
        f"{count(days, 'arbetsdag', 'arbetsdagar')} från att den fick besked (dagen för "
        "beskedet räknas inte)."
    )


def same_day_basis() -> str:
    """What the same-day watch rests on."""
    return "Enligt rutinen ska alla mottagare få besked samma arbetsdag som ankomsten registreras."


# --- what happens when a deadline passes (shown in the case view) ------------------------


def then_ack_reminder(organisation: str) -> str:
    """The reminder to a recipient that has not acknowledged."""
    return f"{organisation} får en påminnelse om att bekräfta meddelandet, om det inte är gjort."


def then_ack_escalation(organisation: str, supervisor: str | None) -> str:
    """The escalation of a missing acknowledgement."""
    if supervisor is None:
        return (
            f"Om {organisation} inte har bekräftat får mottagningsenheten veta det "
            "(organisationen har ingen chef angiven att eskalera till)."
        )
    return (
        f"Om {organisation} inte har bekräftat eskaleras ärendet till {supervisor}, "
        "och mottagningsenheten får veta det."
    )


def then_booking_reminder(organisation: str, deadline: date) -> str:
    """The reminder to book a health examination."""
    return (
        f"{organisation} påminns om att boka hälsosamtal senast {swedish_date(deadline)}, "
        "om ingen bokad tid har meddelats."
    )


def then_booking_escalation(organisation: str, supervisor: str | None) -> str:
    """The escalation of a missing booking."""
    if supervisor is None:
        return (
            f"Om {organisation} inte har meddelat någon bokad tid får mottagningsenheten veta det."
        )
    return (
        f"Om {organisation} inte har meddelat någon bokad tid eskaleras ärendet till "
        f"{supervisor}, och mottagningsenheten får veta det."
    )


def then_same_day() -> str:
    """The same-day check."""
    return (
        "Om meddelandet då inte har nått alla mottagare larmas mottagningsenheten, "
        "så att den kan ringa."
    )


def disagreement_then(days: int) -> str:
    """What happens when a disagreement stays open too long (§7)."""
    return (
        f"Oenigheten lyfts automatiskt till ledningen för varje part, eftersom den inte lösts "
        f"inom {days} arbetsdagar."
    )
