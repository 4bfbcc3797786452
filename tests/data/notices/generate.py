"""Writes the fictional notice corpus (tests/data/notices/*.eml): run this file with Python.

Every person, number and address here is made up. The PDF attachments are written by
`text_pdf` below (a minimal PDF with a text layer), so no PDF writer is needed. Each .eml has a
.json beside it, kept by hand: the draft it must give (`draft`) and the personal data in it that
must never appear in a draft (`personal`).
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

HERE = Path(__file__).parent
SENDER = "Migrationsverket <noreply@migrationsverket.example>"
TO = "mottagning@ostersund.example.se"


def _pdf_string(line: str) -> bytes:
    raw = line.encode("cp1252")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def text_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds `lines` (Helvetica, WinAnsiEncoding)."""
    content = (
        b"BT /F1 11 Tf 14 TL 50 800 Td "
        + b" ".join(_pdf_string(line) + b" Tj T*" for line in lines)
        + b" ET"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def empty_pdf() -> bytes:
    """A PDF page with no text layer at all (as a scan without OCR)."""
    return text_pdf([])


def mail(
    name: str,
    subject: str,
    date: str,
    text: str | None = None,
    html: str | None = None,
    pdf: bytes | None = None,
    sender: str = SENDER,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = TO
    message["Subject"] = subject
    message["Date"] = date
    message["Message-ID"] = f"<{name}@notices.example>"
    if text is not None:
        message.set_content(text)
    if html is not None:
        if text is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    if pdf is not None:
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename="avisering.pdf")
    for part in message.walk():
        if part.is_multipart():
            part.set_boundary(f"==ankomst-{name}-{part.get_content_subtype()}==")
    return message.as_bytes(policy=SMTP)


SAMPLES: dict[str, bytes] = {
    "sv_plain": mail(
        "sv_plain",
        "Avisering om anvisning",
        "Mon, 30 Nov 2026 09:12:00 +0100",
        text="""Avisering om anvisning till kommun

Ärendenummer: 23-456789
Ankomstdatum: 2026-12-08
Antal personer: 4

Vuxen: Amina Haddad, 850312-1234
Vuxen: Karim Haddad, 19800101-5678
Barn: Sara Haddad, född 2017-03-04
Barn: Omar Haddad, född 2021-11-30
Språk: arabiska
Tolkbehov: ja
Adress: Storgatan 12, 831 30 Östersund
Dossiernummer: 1234567
""",
    ),
    "en_plain": mail(
        "en_plain",
        "Notification of municipal placement",
        "Tue, 1 Dec 2026 08:00:00 +0100",
        text="""Notification of municipal placement

Case number: 24-112233
Date of arrival: 15 December 2026
Number of persons: 3

Parent: Fatima Rahimi, date of birth 1990-04-17
Child: Ahmad Rahimi, date of birth 2012-06-01
Child: Maryam Rahimi, age 7
Languages: Dari, Pashto
Interpreter needed: yes
Address: Kyrkgatan 5 B, 831 34 Östersund
""",
    ),
    "sv_html": mail(
        "sv_html",
        "Avisering – ensamkommande barn",
        "Mon, 30 Nov 2026 14:30:00 +0100",
        html="""<html><head><style>td {color: red}</style></head><body>
<h2>Avisering</h2>
<table>
<tr><td>&Auml;rendenummer</td><td>25-778899</td></tr>
<tr><td>Ankomstdatum</td><td>2026-12-07</td></tr>
<tr><td>Ensamkommande barn</td><td>ja</td></tr>
<tr><td>Namn</td><td>Abdi Warsame</td></tr>
<tr><td>F&ouml;dd</td><td>2010-02-14</td></tr>
<tr><td>Spr&aring;k</td><td>somaliska</td></tr>
<tr><td>Boende</td><td>HVB Solrosen, Fjällvägen 3</td></tr>
</table></body></html>""",
    ),
    "sv_pdf": mail(
        "sv_pdf",
        "Avisering",
        "Wed, 2 Dec 2026 10:00:00 +0100",
        text="Hej,\n\nSe bifogad avisering.\n\nMed vänlig hälsning\nMigrationsverket\n",
        pdf=text_pdf(
            [
                "Avisering om anvisning",
                "Ärendenummer: 25-000111",
                "Ankomstdatum: 2026-12-10",
                "Antal personer: 2",
                "Vuxen: Semhar Kidane, 19950505-2345",
                "Barn: Luwam Kidane, 140505-1234",
                "Språk: tigrinja",
                "Adress: Prästgatan 40, 831 31 Östersund",
            ]
        ),
    ),
    "sv_ocr": mail(
        "sv_ocr",
        "VB: skannad avisering",
        "Thu, 3 Dec 2026 07:45:00 +0100",
        text="""ARENDENUMMER : 22-998877
ANKOMSTDATUM : 9 december 2026
antal personer 3
Vardnadshavare: Olena Kovalenko fodd 1988-02-02
Barn 1: Dmytro Kovalenko fodd 2019-07-21
Barn 2: Iryna Kovalenko fodd 2013-12-24
Sprak: ukrainska, ryska
Ej ensamkommande
Adress: Hamngatan 7, Ostersund
""",
    ),
    "en_forwarded": mail(
        "en_forwarded",
        "Fwd: Notification of arrival",
        "Tue, 1 Dec 2026 16:20:00 +0100",
        sender="Anna Andersson <anna@ostersund.example.se>",
        text="""Hi, see below. /Anna

---------- Forwarded message ---------
> From: Migrationsverket <noreply@migrationsverket.example>
> Date: Tue, 1 Dec 2026 15:02
> Subject: Notification of arrival
> To: Anna Andersson <anna@ostersund.example.se>
>
> Case number: 26-445566
> Date of arrival: 2026-12-14
> Unaccompanied minor: yes
> Name: Yonas Tesfay, born 2011-09-09
> Language: Tigrinya
> Placement: Björkvägen 9, Östersund
""",
    ),
    "en_html": mail(
        "en_html",
        "Arrival notification",
        "Fri, 4 Dec 2026 11:00:00 +0100",
        text="Arrival notification (see the HTML version).",
        html="""<html><body><p>Arrival notification</p>
<p>Case no: 27-123123<br>Expected arrival: December 11, 2026<br>
Number of persons: 4</p>
<ul><li>Child: Ali Karimi, age 3</li><li>Child: Zahra Karimi, age 10</li>
<li>Parent: Reza Karimi, age 38</li><li>Parent: Leila Karimi, age 35</li></ul>
<p>Languages: ar, fa</p><p>Interpreter: no</p>
<p>Address: Rådhusgatan 20, 831 80 Östersund</p></body></html>""",
    ),
    "unreadable": mail(
        "unreadable",
        "Avisering",
        "Mon, 30 Nov 2026 17:00:00 +0100",
        text="Hej! Se bilaga.\n",
        pdf=empty_pdf(),
    ),
}


def main() -> None:
    """Write every sample."""
    for name, raw in SAMPLES.items():
        (HERE / f"{name}.eml").write_bytes(raw)


if __name__ == "__main__":
    main()
