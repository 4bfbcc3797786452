"""What a delivery says: the message models, the view of a case version, the .ics of a booked
health conversation, e-mail thread ids and the buttons under a chat message.

The deliverer (bot/pipeline/delivery.py) asks this module for a rendered message and sends it;
nothing here sends or records anything.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import icalendar

from bot.channels.email import Attachment
from bot.domain.actor import Actor
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import Case, Version
from bot.domain.clock import Clock
from bot.domain.delivery import Delivery, mail_ids
from bot.domain.directory import Directory, Organisation
from bot.domain.events import ChannelKind, Topic
from bot.domain.policy import Policy
from bot.pipeline.buttons import ack_row, booking_row, escalate_row, plain_rows
from bot.store import keys
from bot.store.cases import CaseStore
from bot.usecases.access import ChatLinks, Signer
from messages import models as m
from messages.digest import (
    DigestCase,
    EscalationDigest,
    NotAcknowledged,
    NotBooked,
    render_digest,
)
from messages.render import render_all_acknowledged, render_arrival, render_case_notice

# Notices whose e-mail links to the case on the board (a signed deep link, bound to the case
# and the recipient); the health centre's booking reminder leads to its booking form instead.
CASE_LINKED: frozenset[Topic] = frozenset(
    {
        Topic.ACK_REMINDER,
        Topic.ACK_ESCALATION,
        Topic.ACK_OVERDUE_RECEPTION,
        Topic.BOOKING_REMINDER,
        Topic.BOOKING_ESCALATION,
        Topic.SAME_DAY_ALERT,
        Topic.DISAGREEMENT_RAISED,
        Topic.DISAGREEMENT_ESCALATED,
        Topic.DISAGREEMENT_RESOLVED,
    }
)


# Health centres' first-told markers a renderer keeps (one per case it has told one about).
INFORMED_KEPT = 4096
ROWS_KEPT = 1024  # versions whose chat button rows a renderer keeps (MessageRenderer._rows)


@dataclass(frozen=True)
class RenderSettings:
    """What rendering needs from the settings."""

    public_url: str
    from_domain: str
    # ANKOMST_CHAT_DETAILS: with "minimal" (the default) no free text a person typed reaches a
    # chat message; which fields those are is messages.values.FREE_TEXT_FIELDS, the one list.
    chat_details: m.ChatDetails
    booking_days: int


def contact(org: Organisation) -> m.Contact:
    """An organisation as a message shows it."""
    return m.Contact(name=org.name, email=org.email, phone=org.phone)


def facts_of(case: Case, version: Version, directory: Directory) -> m.ArrivalFacts:
    """The view of one version's facts for the renderers."""
    facts = version.facts
    return m.ArrivalFacts(
        reference=case.reference,
        municipality=directory.municipalities[case.municipality].name,
        arrival_date=date.fromisoformat(facts["arrival_date"]),
        children=tuple(m.Child(int(c["age"]), c.get("initials")) for c in facts["children"]),
        languages=tuple(facts["languages"]),
        interpreter_needed=bool(facts["interpreter_needed"]),
        unaccompanied=bool(facts["unaccompanied"]),
        details=str(facts.get("details", "")),
    )


def _value(field: str, raw: Any) -> Any:
    """Stored JSON values back to what the renderers format (dates, children)."""
    if field == "arrival_date" and isinstance(raw, str):
        return date.fromisoformat(raw)
    if field == "children" and isinstance(raw, list):
        return tuple(m.Child(int(c["age"]), c.get("initials")) for c in raw)
    if field == "languages" and isinstance(raw, list):
        return tuple(raw)
    return raw


def thread_ids(d: Delivery, from_domain: str) -> tuple[str, str]:
    """(this message's Message-ID, the case thread's root id) for one recipient: the first
    arrival message starts the thread, everything after answers it (made in one place,
    bot/domain/delivery.py `mail_ids`, which a stored record's Message-ID is told from)."""
    return mail_ids(d.id, d.case, d.org, d.version, d.topic, from_domain)


def booking_ics(
    d: Delivery, reference: str, from_domain: str, now: datetime, zone: ZoneInfo
) -> Attachment:
    """The booked health conversation as a calendar event (one UID per case, so a new booking
    updates the event instead of adding one; its SEQUENCE is the booking's number).

    Times are local times of `zone` (ANKOMST_TIMEZONE) with a VTIMEZONE for it built from
    zoneinfo (RFC 5545 §3.6.5), so every calendar reads the same instant, summer or winter;
    a time given without an offset is wall time in `zone`.
    """
    booked = datetime.fromisoformat(str(d.params["booked_at"]))
    start = booked.astimezone(zone) if booked.tzinfo else booked.replace(tzinfo=zone)
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Ankomst//hälsosamtal//SV")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = icalendar.Event()
    event.add("uid", f"health-booking-{d.case}@{from_domain}")
    event.add("sequence", d.topic.sequence)
    event.add("dtstamp", now.astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", start + timedelta(hours=1))
    event.add("summary", f"Hälsosamtal, {reference}")
    event.add("location", str(d.params.get("organisation", "")))
    interpreter = "Tolk bokad." if d.params.get("interpreter_booked") else "Tolk inte bokad."
    event.add("description", interpreter)
    calendar.add_component(event)
    # Only the transitions of the booking's year: a short VTIMEZONE (one DTSTART
    # per change, no long RDATE lists, which some readers — dateutil's, Outlook's — skip).
    calendar.add_missing_timezones(
        first_date=date(start.year, 1, 1), last_date=date(start.year, 12, 31)
    )
    return Attachment("halsosamtal.ics", "text/calendar; method=PUBLISH", calendar.to_ical())


class MessageRenderer:
    """Renders deliveries: the message for each topic, its attachments and its buttons."""

    def __init__(
        self,
        cases: CaseStore,
        directory: Directory,
        chats: ChatLinks,
        calendar: WorkingDayCalendar,
        signer: Signer,
        clock: Clock,
        settings: RenderSettings,
    ) -> None:
        self.cases = cases
        self.directory = directory
        self.chats = chats
        self.calendar = calendar
        self.signer = signer
        self.clock = clock
        self.settings = settings
        # Who may report the booking (and so gets the booking link and deadline) is the
        # policy's rule, as for the chat's Boka button.
        self.policy = Policy(directory)
        # When each health centre was first told of a case, once known: a once-only marker
        # (HSETNX, never changed), so read once, not for each of its messages.
        self._informed: OrderedDict[tuple[str, str], str] = OrderedDict()
        # The Mottaget and Boka rows of a version (`_rows`), each made when first needed.
        self._made_rows: OrderedDict[tuple[str, int], list[list[dict[str, Any]] | None]] = (
            OrderedDict()
        )

    async def _informed_at(self, case_id: str, org_id: str) -> str | None:
        """When the health centre `org_id` was first told of the case (its marker), or None."""
        key = (case_id, org_id)
        known = self._informed.get(key)
        if known is not None:
            self._informed.move_to_end(key)
            return known
        informed = await self.cases.marker(case_id, keys.booking_informed_marker(org_id))
        if informed:
            self._informed[key] = informed
            if len(self._informed) > INFORMED_KEPT:
                self._informed.popitem(last=False)
        return informed

    @property
    def zone(self) -> ZoneInfo:
        """ANKOMST_TIMEZONE: every time a message shows is shown in it."""
        return self.calendar.zone

    def _ack_url(self, case: Case, d: Delivery) -> str:
        token = self.signer.ack_token(case.id, d.version, d.org)
        return f"{self.settings.public_url}/a/{token}"

    def deep_link(self, case_id: str, org_id: str, target: str = "case") -> str:
        """A signed link from a mail to the board: the case page, or the health centre's
        booking form (`target` "booking"); bound to case and organisation, expiring."""
        token = self.signer.deep_link_token(case_id, org_id, target)
        return f"{self.settings.public_url}/dashboard/l/{token}"

    def _digest(self, d: Delivery) -> m.Rendered:
        email = d.channel_kind is ChannelKind.EMAIL
        cases = []
        for c in d.params.get("cases", []):
            municipality = self.directory.municipalities.get(str(c["municipality"]))
            items = list(c.get("overdue", []))
            cases.append(
                DigestCase(
                    reference=str(c["reference"]),
                    municipality=municipality.name if municipality else str(c["municipality"]),
                    arrival_date=date.fromisoformat(str(c["arrival_date"])),
                    url=self.deep_link(str(c["id"]), d.org) if email else None,
                    not_acknowledged=tuple(
                        NotAcknowledged(
                            str(i["organisation"]),
                            datetime.fromisoformat(str(i["sent_at"])),
                            str(i["waited"]),
                        )
                        for i in items
                        if i.get("kind") == "ack"
                    ),
                    not_booked=tuple(
                        NotBooked(str(i["organisation"]), date.fromisoformat(str(i["deadline"])))
                        for i in items
                        if i.get("kind") == "booking"
                    ),
                )
            )
        digest = EscalationDigest(
            recipient=contact(self.directory.organisation(d.org)),
            cases=tuple(cases),
            basis_ack=str(d.params.get("basis_ack", "")),
            basis_booking=str(d.params.get("basis_booking", "")),
        )
        return render_digest(digest, self.calendar.zone)

    async def render(self, d: Delivery, case: Case, version: Version) -> tuple[m.Rendered, bool]:
        """The message for a delivery (of `version` of `case`), and whether it asks for an
        acknowledgement. The forms of the delivery's channel are rendered (and any problem
        with them raised) here; the other channel's only if asked for."""
        forms: Literal["email", "telegram"] = (
            "email" if d.channel_kind is ChannelKind.EMAIL else "telegram"
        )
        org = self.directory.organisation(d.org)
        topic = d.topic.kind
        municipality = self.directory.municipalities[case.municipality].name
        arrival_date = date.fromisoformat(version.facts["arrival_date"])
        if topic is Topic.ESCALATION_DIGEST:
            return self._digest(d), False
        if topic is Topic.NOTICE:
            needs_ack = not d.is_copy and version.kind != "cancelled"
            ack_url = None
            if needs_ack and d.channel_kind is ChannelKind.EMAIL:
                ack_url = self._ack_url(case, d)
            reports_health = self.policy.may_report_health(d.org, case)
            booking_url = None
            if (
                reports_health
                and not d.is_copy
                and version.kind != "cancelled"
                and d.channel_kind is ChannelKind.EMAIL
            ):
                booking_url = self.deep_link(case.id, d.org, "booking")
            deadline = None
            if reports_health:
                # Counted from when the health centre was first told (bot/pipeline/deadlines.py
                # keeps that moment); for its first message that moment is now.
                informed = await self._informed_at(case.id, org.id)
                deadline = self.calendar.booking_deadline(
                    datetime.fromisoformat(informed) if informed else self.clock.now(),
                    self.settings.booking_days,
                )
            notice = m.ArrivalNotice(
                kind=version.kind,
                facts=facts_of(case, version, self.directory),
                version=d.version,
                recipient=contact(org),
                recipient_kind=org.kind,
                reception_unit=contact(self.directory.organisation(case.reception_unit)),
                needs_ack=needs_ack,
                ack_url=ack_url,
                booking_deadline=deadline,
                booking_url=booking_url,
                changes=tuple(
                    m.Change(c["field"], _value(c["field"], c["old"]), _value(c["field"], c["new"]))
                    for c in version.changes
                ),
                cancel_reason=version.reason or None,
                today=self.calendar.today(self.clock),
            )
            return render_arrival(notice, self.settings.chat_details, forms), needs_ack
        if topic is Topic.ALL_ACKNOWLEDGED:
            acks = await self.cases.acks(case.id)
            done = tuple(
                (
                    self.directory.organisation(o).name,
                    datetime.fromisoformat(acks[f"{d.version}:{o}"]["at"]),
                )
                for o in case.recipients
                if f"{d.version}:{o}" in acks
            )
            return (
                render_all_acknowledged(
                    m.AllAcknowledged(case.reference, municipality, arrival_date, d.version, done),
                    self.zone,
                    forms,
                ),
                False,
            )
        facts: dict[str, object] = dict(d.params)
        if topic is Topic.DELIVERY_FAILED:
            failed_org = self.directory.organisations.get(str(d.params.get("organisation", "")))
            facts["organisation"] = failed_org.name if failed_org else d.params.get("organisation")
            facts["channel"] = (
                "e-post" if d.params.get("channel") == ChannelKind.EMAIL else "Telegram"
            )
        if topic is Topic.ACK_REMINDER and d.channel_kind is ChannelKind.EMAIL:
            # The reminder by e-mail carries the acknowledge link of the version it is about.
            facts["ack_url"] = self._ack_url(case, d)
        if topic in CASE_LINKED and d.channel_kind is ChannelKind.EMAIL:
            booking = topic is Topic.BOOKING_REMINDER and self.policy.may_report_health(d.org, case)
            facts["case_url"] = self.deep_link(case.id, d.org, "booking" if booking else "case")
        for name, value in list(facts.items()):
            if isinstance(value, str) and name.endswith("_at"):
                facts[name] = datetime.fromisoformat(value)
        # What the wording agrees with: how many children, whether they came alone, whether
        # the arrival is past; the phone of the organisation a notice is about, if any; times
        # in ANKOMST_TIMEZONE.
        facts["zone"] = self.zone
        facts["children_count"] = len(version.facts.get("children", []))
        facts["unaccompanied"] = bool(version.facts.get("unaccompanied"))
        facts["arrived"] = arrival_date < self.calendar.today(self.clock)
        about = self.directory.organisations.get(d.topic.suffix or "")
        if about is not None and about.phone:
            facts["organisation_phone"] = about.phone
        status = m.CaseNotice(
            topic, case.reference, municipality, arrival_date, contact(org), facts
        )
        return render_case_notice(status, self.settings.chat_details, forms), False

    def attachments(self, d: Delivery, case: Case) -> tuple[Attachment, ...]:
        """Files an e-mail carries: the .ics of a booked health conversation."""
        if d.topic.kind is Topic.HEALTH_BOOKING:
            return (
                booking_ics(
                    d, case.reference, self.settings.from_domain, self.clock.now(), self.zone
                ),
            )
        return ()

    async def buttons(
        self, d: Delivery, case: Case, chat_id: int, needs_ack: bool
    ) -> dict[str, Any] | None:
        """The buttons under a chat message, as the Bot API's `reply_markup` JSON: Mottaget;
        Boka where the policy lets the organisation report the booking (the health centre on
        the case); Eskalera where it lets the chat's person escalate (a supervisor of a
        party)."""
        policy = self.policy
        booking = (
            d.is_arrival_notice
            and case.status != "cancelled"
            and policy.may_report_health(d.org, case)
        )
        rows = self._rows(case.id, d.version, needs_ack, booking)
        if d.topic.kind is Topic.DISAGREEMENT_RAISED and d.topic.suffix:
            link = await self.chats.link_of(chat_id)
            if link is not None and policy.may_escalate(
                Actor(org_id=link.org_id, role=link.role, via="telegram"), case
            ):
                rows += plain_rows([escalate_row(self.signer, d.topic.suffix)])
        return {"inline_keyboard": rows} if rows else None

    def _rows(
        self, case_id: str, version: int, ack: bool, booking: bool
    ) -> list[list[dict[str, Any]]]:
        """The Mottaget and Boka rows, signed and in JSON form, each made once for the chats of
        a version: a case's arrival notice goes to several chats with the same rows, and making
        them (aiogram's models, a MAC each, then their JSON) was a few per cent of a delivery's
        CPU (issue 17). Kept for the last `ROWS_KEPT` versions made; never changed once made."""
        if not (ack or booking):
            return []
        made = self._made_rows.get((case_id, version))
        if made is None:
            made = self._made_rows[(case_id, version)] = [None, None]
            if len(self._made_rows) > ROWS_KEPT:
                self._made_rows.popitem(last=False)
        rows: list[list[dict[str, Any]]] = []
        if ack:
            row = made[0]
            if row is None:
                row = made[0] = plain_rows([ack_row(self.signer, case_id, version)])[0]
            rows.append(row)
        if booking:
            row = made[1]
            if row is None:
                row = made[1] = plain_rows([booking_row(self.signer, case_id)])[0]
            rows.append(row)
        return rows
