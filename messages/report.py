"""The yearly follow-up as CSV, JSON or a self-contained HTML page with inline SVG charts.

Pure rendering of the figures `bot.usecases.report.build_report` computes: no requests, no scripts —
the HTML page opens from a file and prints as it is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

KIND_NAMES = {
    "alla": "Alla",
    "reception_unit": "Mottagningsenhet",
    "health_centre": "Hälsocentral",
    "preschool": "Förskola",
    "school": "Skola",
    "social_services": "Socialtjänst",
    "management": "Ledning",
}

COLUMNS = (
    "municipality",
    "kind",
    "arrivals",
    "notified_same_day_share",
    "notified_same_day_known",
    "acknowledgements",
    "ack_median_working_hours",
    "ack_p90_working_hours",
    "ack_median_wall_hours",
    "ack_p90_wall_hours",
    "booking_within_5_share",
    "bookings_counted",
    "reminders",
    "escalations",
    "disagreements",
    "disagreements_escalated",
    "disagreements_open",
    "disagreement_median_days_open",
    "disagreement_max_days_open",
)

_env = Environment(
    loader=PackageLoader("messages", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_report_json(report: Mapping[str, Any]) -> str:
    """The report as JSON (the figures exactly as computed)."""
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def render_report_csv(report: Mapping[str, Any]) -> str:
    """One line per municipality and organisation kind; empty cells where nothing is known."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report["rows"]:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    return out.getvalue()


def bar_chart(title: str, bars: Sequence[tuple[str, float | None]], unit: str = "") -> Markup:
    """A horizontal bar chart as inline SVG (labels escaped; an empty value draws no bar)."""
    width, label_w, bar_h, gap = 640, 230, 18, 6
    height = 28 + len(bars) * (bar_h + gap)
    top = max((v for _, v in bars if v is not None), default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(bars):
        y = 28 + i * (bar_h + gap)
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(label)}</text>')
        if value is None:
            parts.append(f'<text x="{label_w}" y="{y + 13}" font-size="12">–</text>')
            continue
        w = round((width - label_w - 80) * value / top, 1)
        shown = f"{value:.0%}" if unit == "%" else f"{value:g}{(' ' + unit) if unit else ''}"
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="#2b6cb0"/>')
        parts.append(
            f'<text x="{label_w + w + 4}" y="{y + 13}" font-size="12">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it is escaped above


def render_report_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML page in Swedish, with its charts inline."""
    rows = list(report["rows"])
    totals = [r for r in rows if r["kind"] == "alla"]
    by_kind = [r for r in rows if r["kind"] != "alla"]

    def label(r: Mapping[str, Any]) -> str:
        return f"{r['municipality_name']} · {KIND_NAMES.get(r['kind'], r['kind'])}"

    charts = [
        bar_chart(
            "Ankomster per kommun", [(r["municipality_name"], r["arrivals"]) for r in totals]
        ),
        bar_chart(
            "Andel underrättade samma arbetsdag",
            [(r["municipality_name"], r["notified_same_day_share"]) for r in totals],
            "%",
        ),
        bar_chart(
            "Tid till bekräftelse, median (arbetstimmar)",
            [(label(r), r["ack_median_working_hours"]) for r in by_kind if r["acknowledgements"]],
            "h",
        ),
        bar_chart(
            "Hälsosamtal bokade inom fem arbetsdagar",
            [(r["municipality_name"], r["booking_within_5_share"]) for r in totals],
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
    template = _env.get_template("report/report.html")
    return template.render(report=report, rows=rows, kinds=KIND_NAMES, charts=charts)
