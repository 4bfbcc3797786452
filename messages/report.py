"""The yearly follow-up as CSV (plain, or as Swedish Excel opens it), JSON, or a self-contained
HTML page with inline SVG charts that fits a 1,366 px screen and prints on A4.

Pure rendering of the figures `bot.usecases.report.build_report` computes: no requests, no
scripts — the HTML page opens from a file and prints as it is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from messages.deadlines import WORKING_DAY_RULE
from messages.languages import language_name

KIND_NAMES = {
    "alla": "Alla",
    "reception_unit": "Mottagningsenhet",
    "health_centre": "Hälsocentral",
    "preschool": "Förskola",
    "school": "Skola",
    "social_services": "Socialtjänst",
    "management": "Ledning",
}

# Every column of a row, in order, with its Swedish heading (csv-sv and the HTML page).
LABELS: dict[str, str] = {
    "month": "Månad",
    "municipality": "Kommun",
    "kind": "Organisationstyp",
    "arrivals": "Ankomster",
    "cancelled": "Inställda",
    "children_0": "Barn 0 år",
    "children_1_5": "Barn 1–5 år",
    "children_6_15": "Barn 6–15 år",
    "children_16_17": "Barn 16–17 år",
    "unaccompanied": "Ensamkommande",
    "interpreter_needed": "Tolk behövs",
    "languages": "Språk",
    "notified_same_day_share": "Underrättade samma arbetsdag, andel",
    "notified_same_day_known": "Underrättade, antal kända",
    "notice_to_notified_median_hours": "Avisering → underrättelse, median (timmar)",
    "notice_to_notified_counted": "Avisering → underrättelse, antal",
    "acknowledgements": "Bekräftelser",
    "ack_median_working_hours": "Tid till bekräftelse, median (arbetstimmar)",
    "ack_p90_working_hours": "Tid till bekräftelse, 90:e percentil (arbetstimmar)",
    "ack_median_wall_hours": "Tid till bekräftelse, median (timmar)",
    "ack_p90_wall_hours": "Tid till bekräftelse, 90:e percentil (timmar)",
    "booking_within_5_share": "Hälsosamtal bokat i tid, andel",
    "bookings_counted": "Bokningar med passerad eller uppfylld frist",
    "bookings_in_time": "Bokat i tid",
    "bookings_late": "Bokat sent eller inte alls",
    "bookings_never_booked": "Varav aldrig bokat",
    "bookings_pending": "Fristen löper ännu",
    "arrival_to_health_median_days": "Ankomst → hälsosamtal, median (dagar)",
    "arrival_to_health_counted": "Ankomst → hälsosamtal, antal",
    "reminders": "Påminnelser",
    "escalations": "Eskaleringar",
    "disagreements": "Oenigheter",
    "disagreements_escalated": "Oenigheter lyfta",
    "disagreements_open": "Oenigheter öppna",
    "disagreement_median_days_open": "Öppen tid, median (dagar)",
    "disagreement_max_days_open": "Längst öppen (dagar)",
}
COLUMNS = tuple(c for c in LABELS if c != "month")
SHARES = frozenset({"notified_same_day_share", "booking_within_5_share"})

# The HTML page's tables: each a handful of columns, so none is wider than the screen.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Ankomster och barn",
        (
            "arrivals",
            "cancelled",
            "children_0",
            "children_1_5",
            "children_6_15",
            "children_16_17",
            "unaccompanied",
            "interpreter_needed",
            "languages",
        ),
    ),
    (
        "Underrättelse och bekräftelse",
        (
            "notified_same_day_share",
            "notice_to_notified_median_hours",
            "acknowledgements",
            "ack_median_working_hours",
            "ack_p90_working_hours",
            "ack_median_wall_hours",
            "ack_p90_wall_hours",
        ),
    ),
    (
        "Hälsosamtal",
        (
            "booking_within_5_share",
            "bookings_in_time",
            "bookings_late",
            "bookings_never_booked",
            "bookings_pending",
            "arrival_to_health_median_days",
        ),
    ),
    (
        "Påminnelser, eskaleringar och oenigheter",
        (
            "reminders",
            "escalations",
            "disagreements",
            "disagreements_escalated",
            "disagreements_open",
            "disagreement_median_days_open",
            "disagreement_max_days_open",
        ),
    ),
)

_env = Environment(
    loader=PackageLoader("messages", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def swedish_number(value: float | int | None, *, share: bool = False) -> str:
    """A figure as a Swedish reader writes it: "2,5", "40 %", "–" for nothing known."""
    if value is None:
        return "–"
    if share:
        return f"{round(value * 100):d} %"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:g}".replace(".", ",")


def swedish_timestamp(moment: datetime, zone: ZoneInfo) -> str:
    """An instant in `zone` as "2 december 2026 kl. 07.39"."""
    local = moment.astimezone(zone)
    return f"{format_date(local.date(), 'd MMMM y', locale='sv')} kl. {local:%H.%M}"


def _languages(value: Mapping[str, int], *, names: bool) -> str:
    return ", ".join(f"{language_name(c) if names else c} {n}" for c, n in value.items())


def _columns(report: Mapping[str, Any]) -> tuple[str, ...]:
    return ("month", *COLUMNS) if report.get("per_month") else COLUMNS


def render_report_json(report: Mapping[str, Any]) -> str:
    """The report as JSON (the figures exactly as computed)."""
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def render_report_csv(report: Mapping[str, Any]) -> str:
    """One line per municipality and organisation kind (and month); comma-separated, decimal
    point, column names as in the JSON; empty cells where nothing is known."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = _columns(report)
    writer.writerow(columns)
    for row in report["rows"]:
        writer.writerow(
            [
                _languages(row[c], names=False)
                if c == "languages"
                else ("" if row[c] is None else row[c])
                for c in columns
            ]
        )
    return out.getvalue()


def render_report_csv_sv(report: Mapping[str, Any]) -> str:
    """The CSV as Swedish Excel opens it: semicolons, decimal comma, Swedish headings and
    names, UTF-8 with a byte order mark (write it encoded as UTF-8)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    columns = _columns(report)
    writer.writerow([LABELS[c] for c in columns])

    def cell(row: Mapping[str, Any], c: str) -> str:
        value = row[c]
        if c == "languages":
            return _languages(value, names=True)
        if c == "municipality":
            return str(row["municipality_name"])
        if c == "kind":
            return KIND_NAMES.get(str(value), str(value))
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:g}".replace(".", ",")
        return str(value)

    for row in report["rows"]:
        writer.writerow([cell(row, c) for c in columns])
    return "\ufeff" + out.getvalue()


def _text_width(text: str, size: int = 12) -> int:
    # A generous estimate of a label's width in a sans-serif font, so no label meets its bar.
    return int(len(text) * size * 0.62) + 8


def bar_chart(
    title: str, bars: Sequence[tuple[str, float | None]], unit: str = ""
) -> Markup | None:
    """A horizontal bar chart as inline SVG: the label left of its bar, the value right of it
    (labels escaped; an empty value draws no bar). None when no bar has a value above zero —
    no empty chart is drawn."""
    if not any(v for _, v in bars):
        return None
    bar_h, gap, value_w = 18, 6, 70
    label_w = max(_text_width(label) for label, _ in bars) + 8
    width = min(max(label_w + 360 + value_w, 480), 1200)
    plot_w = width - label_w - value_w
    height = 28 + len(bars) * (bar_h + gap)
    top = max((v for _, v in bars if v is not None), default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" style="max-width:100%;height:auto">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(bars):
        y = 28 + i * (bar_h + gap)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 13}" font-size="12" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        if value is None:
            parts.append(f'<text x="{label_w}" y="{y + 13}" font-size="12">–</text>')
            continue
        w = round(plot_w * value / top, 1)
        shown = swedish_number(value, share=unit == "%")
        if unit and unit != "%":
            shown = f"{shown} {unit}"
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="#2b6cb0"/>')
        parts.append(
            f'<text x="{label_w + w + 4}" y="{y + 13}" font-size="12">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it is escaped above


def _cell(row: Mapping[str, Any], column: str) -> str:
    value = row[column]
    if column == "languages":
        return _languages(value, names=True) or "–"
    return swedish_number(value, share=column in SHARES)


def render_report_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML page in Swedish, with its charts inline."""
    rows = list(report["rows"])
    whole = [r for r in rows if "month" not in r]
    totals = [r for r in rows if r["kind"] == "alla"]
    if report.get("per_month"):
        # The charts show the period as a whole: each municipality's months added up.
        by_municipality: dict[str, dict[str, Any]] = {}
        for r in totals:
            t = by_municipality.setdefault(
                r["municipality"],
                {"municipality_name": r["municipality_name"], "arrivals": 0},
            )
            t["arrivals"] += r["arrivals"]
        chart_totals = list(by_municipality.values())
    else:
        chart_totals = totals
    by_kind = [r for r in whole if r["kind"] != "alla"]

    def label(r: Mapping[str, Any]) -> str:
        return f"{r['municipality_name']} · {KIND_NAMES.get(r['kind'], r['kind'])}"

    charts = [
        bar_chart(
            "Ankomster per kommun",
            [(r["municipality_name"], r["arrivals"]) for r in chart_totals],
        ),
        bar_chart(
            "Andel underrättade samma arbetsdag",
            [
                (r["municipality_name"], r["notified_same_day_share"])
                for r in whole
                if r["kind"] == "alla" and r["notified_same_day_known"]
            ],
            "%",
        ),
        bar_chart(
            "Tid till bekräftelse, median (arbetstimmar)",
            [(label(r), r["ack_median_working_hours"]) for r in by_kind if r["acknowledgements"]],
            "h",
        ),
        bar_chart(
            f"Hälsosamtal bokade i tid (inom {report.get('booking_days', 5)} arbetsdagar)",
            [
                (r["municipality_name"], r["booking_within_5_share"])
                for r in whole
                if r["kind"] == "alla" and r["bookings_counted"]
            ],
            "%",
        ),
        bar_chart(
            "Påminnelser och eskaleringar",
            [
                (f"{label(r)}: {word}", r[key])
                for r in by_kind
                for key, word in (("reminders", "påminnelser"), ("escalations", "eskaleringar"))
                if r[key]
            ],
        ),
    ]
    zone = ZoneInfo(str(report.get("timezone", "Europe/Stockholm")))
    lead = (
        ("month", "municipality", "kind") if report.get("per_month") else ("municipality", "kind")
    )
    tables = [
        {
            "title": title,
            "columns": [LABELS[c] for c in (*lead, *columns)],
            "rows": [
                {
                    "total": r["kind"] == "alla",
                    "cells": [
                        *([r["month"]] if "month" in lead else []),
                        r["municipality_name"],
                        KIND_NAMES.get(r["kind"], r["kind"]),
                        *(_cell(r, c) for c in columns),
                    ],
                }
                for r in rows
            ],
        }
        for title, columns in TABLES
    ]
    template = _env.get_template("report/report.html")
    return template.render(
        report=report,
        period=(f"{swedish_day(report['from'])} – {swedish_day(report['to'])}"),
        generated=swedish_timestamp(datetime.fromisoformat(report["generated_at"]), zone),
        working_day_rule=WORKING_DAY_RULE,
        tables=tables,
        charts=[c for c in charts if c is not None],
    )


def swedish_day(iso: str) -> str:
    """An ISO date as "1 januari 2026"."""
    return format_date(datetime.fromisoformat(iso).date(), "d MMMM y", locale="sv")
