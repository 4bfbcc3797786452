"""Reading Migrationsverket's notices (aviseringar): every parsing rule in one module.

A notice is an e-mail: plain text, HTML, or a text-bearing PDF attachment, perhaps forwarded
(quoted headers, "> " prefixes) and perhaps OCR'd with å/ä/ö lost ("ankomstdatum", "sprak").
`parse_notice` reads only what the service may keep — the arrival date, the children's ages
(computed from birth dates, which are then forgotten), the languages as ISO 639 codes, whether a
child is unaccompanied, whether an interpreter is needed, and how many people come — plus a
keyed hash of Migrationsverket's case number as `external_ref`, so the same notice twice is one
draft. Names, personal identity numbers, dossier numbers and addresses are never returned: the
result holds no text taken from the notice except dates, numbers and language codes.

A notice that cannot be read at all still gives a draft: empty, saying so (`UNREADABLE`), so
that nobody's arrival is dropped in silence.

Pure: no I/O. pypdf reads PDF bytes in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from functools import lru_cache
from html.parser import HTMLParser
from typing import Final

from messages.language_table import TABLE

UNREADABLE: Final = "kunde inte läsas – fyll i själv"
# The prefix of every external_ref a notice gives, so a case made from one is recognisable.
REF_PREFIX: Final = "mv-"
MAX_CHILD_AGE: Final = 17
MAX_PEOPLE: Final = 40  # a notice about more is not one household: the count is not believed
MAX_TEXT: Final = 200_000  # what is read of one notice; the rest is ignored

_MONTHS: Final = {
    "jan": 1, "januari": 1, "january": 1,
    "feb": 2, "februari": 2, "february": 2,
    "mar": 3, "mars": 3, "march": 3,
    "apr": 4, "april": 4,
    "maj": 5, "may": 5,
    "jun": 6, "juni": 6, "june": 6,
    "jul": 7, "juli": 7, "july": 7,
    "aug": 8, "augusti": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9,
    "okt": 10, "oct": 10, "oktober": 10, "october": 10,
    "nov": 11, "november": 11,
    "dec": 12, "december": 12,
}  # fmt: skip

# English (and common alternative) names the Swedish table does not hold. Keys are folded.
_OTHER_NAMES: Final = {
    "arabic": "ar", "dari": "prs", "persian": "fa", "farsi": "fa", "somali": "so",
    "tigrinya": "ti", "tigrinja": "ti", "tigrinska": "ti", "ukrainian": "uk", "pashto": "ps",
    "pashtu": "ps", "kurdish": "ku", "kurmanji": "kmr", "sorani": "ckb", "russian": "ru",
    "english": "en", "swedish": "sv", "amharic": "am", "turkish": "tr", "french": "fr",
    "spanish": "es", "urdu": "ur", "bengali": "bn", "uzbek": "uz", "uighur": "ug",
    "uyghur": "ug", "georgian": "ka", "albanian": "sq", "serbian": "sr", "bosnian": "bs",
    "croatian": "hr", "romanian": "ro", "polish": "pl", "vietnamese": "vi", "thai": "th",
    "mongolian": "mn", "oromo": "om", "swahili": "sw", "lingala": "ln", "hazaragi": "haz",
    "armenian": "hy", "azerbaijani": "az", "chinese": "zh", "mandarin": "zh", "hindi": "hi",
    "punjabi": "pa", "tamil": "ta", "nepali": "ne", "burmese": "my", "kinyarwanda": "rw",
}  # fmt: skip

# --- text ------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Lowercase without diacritics, as OCR'd text often is: "Språk" and "sprak" both "sprak"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class _TextOfHtml(HTMLParser):
    """Text of an HTML body, a line per block element and table cell kept apart."""

    _BREAKS: Final = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(self._skip - 1, 0)
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The readable text of an HTML document (script and style left out)."""
    parser = _TextOfHtml()
    parser.feed(markup)
    parser.close()
    return html.unescape("".join(parser.parts))


def pdf_to_text(data: bytes) -> str:
    """The text of a PDF with a text layer; "" for one without (a scan) or a broken one."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError

        reader = PdfReader(io.BytesIO(data))
        return "\n".join((page.extract_text() or "") for page in reader.pages[:20])
    except (PyPdfError, ValueError, KeyError, TypeError, OSError):
        return ""


def _parts(message: Message) -> Iterator[Message]:
    for part in message.walk():
        if not part.is_multipart():
            yield part


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def notice_text(message: Message) -> str:
    """Every readable text of a notice: plain parts, HTML parts as text, PDF attachments with a
    text layer; a forwarded message inside (message/rfc822) is walked too."""
    texts: list[str] = []
    for part in _parts(message):
        kind = part.get_content_type()
        if kind == "text/plain":
            texts.append(_payload_text(part))
        elif kind == "text/html":
            texts.append(html_to_text(_payload_text(part)))
        elif kind == "application/pdf" or (
            kind == "application/octet-stream"
            and (part.get_filename() or "").lower().endswith(".pdf")
        ):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(pdf_to_text(payload))
    text = "\n".join(texts)[:MAX_TEXT]
    # Quoted forwards: "> > Ankomstdatum: …" reads as "Ankomstdatum: …".
    return "\n".join(re.sub(r"^(?:\s*>)+\s?", "", line) for line in text.splitlines())


# --- dates ---------------------------------------------------------------------------------

_ISO_DATE = r"(?P<y>(?:19|20)\d{2})\s?[-./]\s?(?P<m>\d{1,2})\s?[-./]\s?(?P<d>\d{1,2})"
_DMY_DATE = r"(?P<d2>\d{1,2})\s?[./-]\s?(?P<m2>\d{1,2})\s?[./-]\s?(?P<y2>(?:19|20)\d{2})"
_WORD_DATE = (
    r"(?P<d3>\d{1,2})(?:e|:e|st|nd|rd|th)?\.?\s+(?P<mon3>[a-z]{3,9})\.?\s+(?P<y3>(?:19|20)\d{2})"
)
_WORD_DATE_US = (
    r"(?P<mon4>[a-z]{3,9})\.?\s+(?P<d4>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y4>(?:19|20)\d{2})"
)
_ANY_DATE = re.compile(f"{_ISO_DATE}|{_DMY_DATE}|{_WORD_DATE}|{_WORD_DATE_US}")
# A personnummer or samordningsnummer: a birth date and four more digits.
_IDENTITY = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)?\d{2})(?P<m>[01]\d)(?P<d>[0-9]\d)\s?[-+]?\s?\d{4}(?!\d)"
)


def _make_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _date_of(match: re.Match[str]) -> date | None:
    groups = match.groupdict()
    if groups.get("y"):
        return _make_date(int(groups["y"]), int(groups["m"]), int(groups["d"]))
    if groups.get("y2"):
        return _make_date(int(groups["y2"]), int(groups["m2"]), int(groups["d2"]))
    if groups.get("y3"):
        month = _MONTHS.get(groups["mon3"])
        return _make_date(int(groups["y3"]), month, int(groups["d3"])) if month else None
    if groups.get("y4"):
        month = _MONTHS.get(groups["mon4"])
        return _make_date(int(groups["y4"]), month, int(groups["d4"])) if month else None
    return None


def first_date(text: str) -> date | None:
    """The first calendar date written in `text` (folded): ISO, d/m/y, or with a month name."""
    for match in _ANY_DATE.finditer(text):
        found = _date_of(match)
        if found is not None:
            return found
    return None


def _identity_birth_date(match: re.Match[str], on: date) -> date | None:
    year = match.group("y")
    if len(year) == 2:
        # The century the person was most likely born in: not in the future.
        century = 2000 if int(year) <= on.year % 100 else 1900
        full = century + int(year)
    else:
        full = int(year)
    day = int(match.group("d"))
    # A samordningsnummer adds 60 to the day.
    return _make_date(full, int(match.group("m")), day - 60 if day > 60 else day)


def age_on(born: date, on: date) -> int:
    """Whole years between a birth date and a day."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


# --- the fields ----------------------------------------------------------------------------

_ARRIVAL_LABEL = re.compile(
    r"(?:ankomstdatum|ankomstdag|datum for ankomst|planerad ankomst|berakn\w* ankomst|"
    r"ankommer|ankomst|anvisad fran|arrival date|date of arrival|expected arrival|arrives|"
    r"arrival|anlander)"
)
_BIRTH_LABEL = re.compile(r"(?:fodd|fodelsedatum|fodelsedag|date of birth|born|dob|birth date)")
_AGE = re.compile(
    r"(?:(?:alder|age(?:d)?)\s*[:=]?\s*(?P<a>\d{1,2})(?!\d))|"
    r"(?:(?<![\d-])(?P<b>\d{1,2})\s*(?:ar(?:\s+gammal)?|years?(?:\s+old)?|yrs?|y/o)\b)"
)
_PEOPLE = re.compile(
    r"(?:antal\s+(?:personer|individer|familjemedlemmar)|number\s+of\s+(?:persons|people|"
    r"individuals|family members)|total\s+persons|household size|hushall)\s*[:=]?\s*(\d{1,2})\b|"
    r"(?<![\d-])(\d{1,2})\s+(?:personer|persons|people|individer)\b"
)
_LANGUAGE_WORDS = (
    r"(?:sprak|modersmal|tolksprak|tolk pa|languages?|mother tongue|native language|"
    r"interpreter in|interpreter language)"
)
# "Språk: arabiska" anywhere on a line, or "Språk arabiska" at its start (a table row as text).
_LANGUAGE_LABEL = re.compile(
    rf"(?:\b{_LANGUAGE_WORDS}\s*(?:\([^)]*\))?\s*[:=\-]|^{_LANGUAGE_WORDS}\s)\s*(?P<value>[^\n]*)"
)
# Answers, not languages ("no" is Norwegian's code, "ja" Japanese's).
_NOT_LANGUAGES: Final = frozenset({"ja", "nej", "yes", "no", "j", "n", "x"})
_UNACCOMPANIED = re.compile(r"ensamkommande|unaccompanied|utan vardnadshavare")
_UNACCOMPANIED_ANSWER = re.compile(
    r"(?:ensamkommande|unaccompanied)[^:\n]{0,20}[:=]\s*(?P<answer>ja|nej|yes|no|j|n)\b"
)
_NOT_UNACCOMPANIED = re.compile(
    r"(?:inte|ej|ej\s+heller|not)\s+(?:ett\s+|an\s+)?(?:ensamkommande|unaccompanied)"
)
_INTERPRETER = re.compile(
    r"(?P<neg>(?:inget|ingen|ej|inte|no|not)\s+(?:behov\s+av\s+)?)?"
    r"(?:tolk|interpreter)(?:behov)?(?:\s+behovs|\s+needed|\s+required)?"
    r"(?:\s*[:=]\s*(?P<answer>ja|nej|yes|no))?"
)
_CASE_NUMBER = re.compile(
    r"(?:migrationsverkets\s+arende(?:nummer)?|arendenummer|arendenr|arende\s*nr|"
    r"case\s*(?:number|no|nr|ref(?:erence)?)|mig(?:rationsverket)?\s*ref(?:erens)?)"
    r"\.?\s*[:#]?\s*(?P<number>[a-z0-9][a-z0-9\-/ ]{3,24}[a-z0-9])"
)


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    """messages/languages_sv.json: every ISO 639 code -> its Swedish name."""
    table: dict[str, str] = json.loads(TABLE.read_text(encoding="utf-8"))
    return table


@lru_cache(maxsize=1)
def _language_names() -> dict[str, str]:
    """Folded language name (Swedish from the project's table, and common English names) ->
    the code the project stores (the shortest, ISO 639-1 first)."""
    table = _table()
    by_name: dict[str, str] = {}
    for code in sorted(table, key=lambda c: (len(c), c)):
        name = fold(table[code])
        for variant in {name, *re.split(r"\s*[()]\s*", name)}:
            variant = variant.strip()
            if len(variant) >= 3:
                by_name.setdefault(variant, code)
    for name, code in _OTHER_NAMES.items():
        by_name.setdefault(name, code)
    return by_name


def language_of(word: str) -> str | None:
    """The ISO 639 code of one written language (a Swedish or English name, or a code)."""
    word = fold(word).strip(" .:;()[]\"'")
    if not word or word in _NOT_LANGUAGES:
        return None
    names = _language_names()
    if word in names:
        return names[word]
    if 2 <= len(word) <= 3 and word in _table():
        # One code per language, as the name table keeps it: "ara" is stored as "ar".
        return names.get(fold(_table()[word]), word)
    return None


def _languages(lines: Iterable[str]) -> list[str]:
    found: list[str] = []
    for line in lines:
        for match in _LANGUAGE_LABEL.finditer(line):
            value = re.sub(r"\b(?:och|and|samt|eller|or)\b", ",", match.group("value"))
            for token in re.split(r"[,;/+&|]", value):
                words = token.split()
                # "arabiska", "nordkurdiska (kurmanji)", "Arabic (ar)": try the whole, then each.
                for candidate in [" ".join(words), *words]:
                    code = language_of(candidate)
                    if code:
                        if code not in found:
                            found.append(code)
                        break
    return found[:5]


def keyed_ref(secret: bytes, value: str) -> str:
    """An external_ref that names a notice without showing what it names: HMAC-SHA256 of
    `value` under the service's secret, shortened (96 bits)."""
    digest = hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{REF_PREFIX}{digest[:24]}"


@dataclass(frozen=True)
class NoticeDraft:
    """What a notice says that the service may keep; None/empty where it did not say it."""

    external_ref: str
    arrival_date: date | None = None
    ages: tuple[int, ...] = ()
    languages: tuple[str, ...] = ()
    unaccompanied: bool | None = None
    interpreter_needed: bool | None = None
    people: int | None = None
    readable: bool = True

    def fields(self) -> dict[str, str]:
        """The draft as stored (field names of ArrivalIn where they map), all strings."""

        def flag(value: bool | None) -> str:
            return "" if value is None else ("true" if value else "false")

        return {
            "external_ref": self.external_ref,
            "arrival_date": self.arrival_date.isoformat() if self.arrival_date else "",
            "children": json.dumps([{"age": a} for a in self.ages]),
            "languages": ",".join(self.languages),
            "unaccompanied": flag(self.unaccompanied),
            "interpreter_needed": flag(self.interpreter_needed),
            "people": "" if self.people is None else str(self.people),
            "readable": flag(self.readable),
            "note": "" if self.readable else UNREADABLE,
        }


def read_notice_text(text: str, external_ref: str, received: date) -> NoticeDraft:
    """The draft a notice's text gives (see the module). `received` is the day the notice came;
    ages are counted on the arrival date, or on `received` when the notice names none."""
    folded = fold(text)
    lines = [line.strip() for line in folded.splitlines() if line.strip()]

    arrival: date | None = None
    for index, line in enumerate(lines):
        label = _ARRIVAL_LABEL.search(line)
        if label is None or _BIRTH_LABEL.search(line):
            continue
        # The date follows the label on its line, or is alone on the next (a table cell).
        arrival = first_date(line[label.end() :])
        if arrival is None and index + 1 < len(lines):
            arrival = first_date(lines[index + 1])
        if arrival is not None:
            break
    counted_on = arrival or received

    ages: list[int] = []
    people_seen = 0
    for line in lines:
        if _ARRIVAL_LABEL.search(line) and not _BIRTH_LABEL.search(line):
            continue
        born: date | None = None
        birth = _BIRTH_LABEL.search(line)
        if birth is not None:
            born = first_date(line[birth.end() :])
        if born is None:
            identity = _IDENTITY.search(line)
            if identity is not None:
                born = _identity_birth_date(identity, counted_on)
        age: int | None = None
        if born is not None and born <= counted_on:
            age = age_on(born, counted_on)
        else:
            match = _AGE.search(line)
            if match is not None:
                age = int(match.group("a") or match.group("b"))
        if age is None or age > 120:
            continue
        people_seen += 1
        if age <= MAX_CHILD_AGE:
            ages.append(age)

    people: int | None = None
    for match in _PEOPLE.finditer(folded):
        count = int(match.group(1) or match.group(2))
        if 0 < count <= MAX_PEOPLE:
            people = count
            break
    if people is None and people_seen:
        people = people_seen

    languages = _languages(lines)

    unaccompanied: bool | None = None
    answer = _UNACCOMPANIED_ANSWER.search(folded)
    if answer is not None:
        unaccompanied = answer.group("answer") in ("ja", "yes", "j")
    elif _NOT_UNACCOMPANIED.search(folded):
        unaccompanied = False
    elif _UNACCOMPANIED.search(folded):
        unaccompanied = True

    interpreter: bool | None = None
    for match in _INTERPRETER.finditer(folded):
        if match.group("answer"):
            interpreter = match.group("answer") in ("ja", "yes")
        else:
            interpreter = not match.group("neg")
        break
    if interpreter is None and languages:
        interpreter = any(code not in ("sv", "swe") for code in languages)

    readable = bool(arrival or ages or languages)
    if not readable:
        return NoticeDraft(external_ref=external_ref, readable=False)
    return NoticeDraft(
        external_ref=external_ref,
        arrival_date=arrival,
        ages=tuple(ages[:20]),
        languages=tuple(languages),
        unaccompanied=bool(unaccompanied),
        interpreter_needed=interpreter,
        people=people,
        readable=True,
    )


def case_number(text: str) -> str | None:
    """Migrationsverket's case number as written in the notice, normalised (only ever hashed)."""
    match = _CASE_NUMBER.search(fold(text))
    if match is None:
        return None
    number = re.sub(r"[\s/]+", "-", match.group("number").strip()).upper()
    return number if any(c.isdigit() for c in number) else None


def load_message(raw: bytes) -> EmailMessage:
    """An e-mail from its bytes (RFC 5322), leniently."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def received_day(message: Message, fallback: date) -> date:
    """The day a notice was sent by its Date header, else `fallback`."""
    value = message.get("Date")
    if value:
        try:
            return parsedate_to_datetime(str(value)).date()
        except (TypeError, ValueError, IndexError):
            pass
    return fallback


def parse_notice(raw: bytes, secret: bytes, received: date) -> NoticeDraft:
    """The draft one notice (an e-mail's bytes) gives.

    `external_ref` is the keyed hash of Migrationsverket's case number; without one, of the
    Message-ID; without that, of the whole message — so the same notice twice is one draft.
    """
    try:
        message = load_message(raw)
        text = notice_text(message)
        message_id = str(message.get("Message-ID") or "").strip()
    except Exception:
        text, message_id = "", ""
    number = case_number(text)
    if number:
        ref = keyed_ref(secret, f"case:{number}")
    elif message_id:
        ref = keyed_ref(secret, f"message:{message_id}")
    else:
        ref = keyed_ref(secret, "raw:" + hashlib.sha256(raw).hexdigest())
    try:
        return read_notice_text(text, ref, received)
    except (ValueError, RecursionError):
        return NoticeDraft(external_ref=ref, readable=False)
