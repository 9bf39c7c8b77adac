"""``computegate report usage``: one tenant's controlled compute over a span, from the usage
record (a live cluster's ``UsageRecord`` objects, or a folder ``computegate usage export``
wrote), as HTML (with a chart drawn by matplotlib), CSV or JSON.

Per license: TPP-hours and accelerator-hours per period, the average controlled TPP in use
(TPP-hours / hours of the period) against the license's cap (the lowest it had in the period;
its accelerator cap too, when it has one); admissions, denials and violations by reason code.
The records' chain is checked first: a broken chain is reported at the top of every format
(``computegate verify`` says where).
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import importlib.util
import io
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from computegate.engine.usage import verify_chain
from computegate.usagecli import folder_records, live_records

EXIT_OK, EXIT_BAD_INPUT = 0, 2
USAGE_COLOR = "#1f4e9c"  # the chart's usage line (the browser test looks for it)
CAP_COLOR = "#c0392b"


def add_parser(reports: Any) -> None:
    usage = reports.add_parser(
        "usage",
        help="one tenant's controlled TPP-hours per license against the cap, denials and violations",
        description="From the usage record: a live cluster (default), or a folder `usage export` wrote.",
    )
    usage.add_argument("--tenant", required=True)
    usage.add_argument(
        "--from", dest="start", required=True, metavar="RFC3339", help="e.g. 2026-01-01T00:00:00Z"
    )
    usage.add_argument(
        "--to", dest="end", required=True, metavar="RFC3339", help="exclusive, e.g. 2026-02-01T00:00:00Z"
    )
    source = usage.add_mutually_exclusive_group()
    source.add_argument("--folder", type=Path, help="an exported folder of UsageRecords")
    source.add_argument("--kubeconfig", type=Path)
    usage.add_argument("--format", choices=("html", "csv", "json"), default="html")
    usage.set_defaults(handler=run)


def _instant(flag: str, value: str) -> datetime:
    if "T" not in value.upper():
        raise ValueError(
            f"{flag}: expected an RFC 3339 date-time such as 2026-01-01T00:00:00Z, got {value!r}"
        )
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{flag}: expected a time zone offset (Z or +hh:mm) in {value!r}")
    return parsed


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass
class Period:
    start: datetime
    end: datetime
    tpp_hours: float
    accelerator_hours: float
    max_tpp: float | None
    max_accelerators: float | None = None

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    @property
    def average_tpp(self) -> float:
        return self.tpp_hours / self.hours if self.hours else 0.0


@dataclass
class UsageReport:
    tenant: str
    start: datetime
    end: datetime
    licenses: dict[str, list[Period]] = field(default_factory=dict)
    admissions: Counter[str] = field(default_factory=Counter)
    denials: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    records: int = 0
    chain_problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "from": self.start.isoformat().replace("+00:00", "Z"),
            "to": self.end.isoformat().replace("+00:00", "Z"),
            "records": self.records,
            "chainProblems": self.chain_problems,
            "licenses": {
                name: {
                    "tppHours": round(sum(p.tpp_hours for p in periods), 6),
                    "acceleratorHours": round(sum(p.accelerator_hours for p in periods), 6),
                    "periods": [
                        {
                            "start": p.start.isoformat().replace("+00:00", "Z"),
                            "end": p.end.isoformat().replace("+00:00", "Z"),
                            "tppHours": p.tpp_hours,
                            "acceleratorHours": p.accelerator_hours,
                            "averageTPP": round(p.average_tpp, 6),
                            "maxTPP": p.max_tpp,
                            "maxAccelerators": p.max_accelerators,
                        }
                        for p in periods
                    ],
                }
                for name, periods in self.licenses.items()
            },
            "admissions": dict(sorted(self.admissions.items())),
            "denials": dict(sorted(self.denials.items())),
            "violations": dict(sorted(self.violations.items())),
        }


def build(records: list[dict[str, Any]], *, tenant: str, start: datetime, end: datetime) -> UsageReport:
    """The report from the records (all tenants' may be given: the chain needs them all)."""
    pairs = [(str(r["metadata"]["name"]), r.get("spec") or {}) for r in records]
    report = UsageReport(tenant, start, end, chain_problems=[str(p) for p in verify_chain(pairs)])
    by_license: dict[str, list[Period]] = defaultdict(list)
    for _, spec in sorted(pairs, key=lambda pair: str(pair[1].get("periodStart"))):
        if spec.get("tenant") != tenant:
            continue
        period_start, period_end = _parse(str(spec["periodStart"])), _parse(str(spec["periodEnd"]))
        if period_end <= start or period_start >= end:
            continue
        report.records += 1
        for name, figures in (spec.get("licenses") or {}).items():
            cap, count_cap = figures.get("maxTPP"), figures.get("maxAccelerators")
            by_license[name].append(
                Period(
                    period_start,
                    period_end,
                    float(figures.get("tppHours", 0)),
                    float(figures.get("acceleratorHours", 0)),
                    float(cap) if cap is not None else None,
                    float(count_cap) if count_cap is not None else None,
                )
            )
        report.admissions.update(spec.get("admissions") or {})
        report.denials.update(spec.get("denials") or {})
        report.violations.update(spec.get("violations") or {})
    report.licenses = dict(sorted(by_license.items()))
    return report


def run(args: argparse.Namespace) -> int:
    try:
        start, end = _instant("--from", args.start), _instant("--to", args.end)
    except ValueError as error:
        print(f"computegate report usage: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.format == "html" and importlib.util.find_spec("matplotlib") is None:
        print(
            "computegate report usage: --format html draws its chart with matplotlib, which is not "
            "installed: pip install 'computegate[report]' (or use --format csv or json)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    records = folder_records(args.folder) if args.folder else live_records(args.kubeconfig)
    report = build(records, tenant=args.tenant, start=start, end=end)
    write(report, args.format, sys.stdout)
    return EXIT_OK


def write(report: UsageReport, output_format: str, out: TextIO) -> None:
    if output_format == "json":
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
    elif output_format == "csv":
        _write_csv(report, out)
    else:
        out.write(render_html(report))


def _write_csv(report: UsageReport, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "tenant",
            "license",
            "periodStart",
            "periodEnd",
            "tppHours",
            "acceleratorHours",
            "averageTPP",
            "maxTPP",
            "maxAccelerators",
        ]
    )
    for name, periods in report.licenses.items():
        for p in periods:
            writer.writerow(
                [
                    report.tenant,
                    name,
                    p.start.isoformat().replace("+00:00", "Z"),
                    p.end.isoformat().replace("+00:00", "Z"),
                    f"{p.tpp_hours:.6f}",
                    f"{p.accelerator_hours:.6f}",
                    f"{p.average_tpp:.6f}",
                    "" if p.max_tpp is None else f"{p.max_tpp:g}",
                    "" if p.max_accelerators is None else f"{p.max_accelerators:g}",
                ]
            )
    for kind, counts in (
        ("admissions", report.admissions),
        ("denials", report.denials),
        ("violations", report.violations),
    ):
        for code, count in sorted(counts.items()):
            writer.writerow([report.tenant, f"{kind}:{code}", "", "", "", "", "", count, ""])


def chart_png(name: str, periods: list[Period]) -> bytes:
    """The average controlled TPP in use per period against the license's cap."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 3.2), dpi=100)
    try:
        edges: Any = [*(p.start for p in periods), periods[-1].end]  # matplotlib takes datetimes
        used = [*(p.average_tpp for p in periods), periods[-1].average_tpp]
        axes.step(
            edges,
            used,
            where="post",
            color=USAGE_COLOR,
            linewidth=3,
            label="controlled TPP in use (average)",
        )
        axes.fill_between(
            edges,
            used,
            step="post",
            color=USAGE_COLOR,
            alpha=0.35,
        )
        caps = [p.max_tpp for p in periods]
        if any(cap is not None for cap in caps):
            capped = [c if c is not None else float("nan") for c in caps]
            axes.step(
                edges,
                [*capped, capped[-1]],
                where="post",
                color=CAP_COLOR,
                linewidth=2,
                linestyle="--",
                label="maxTPP (cap)",
            )
        axes.set_title(f"ExportLicense {name}")
        axes.set_ylabel("TPP")
        axes.set_ylim(bottom=0)
        axes.legend(loc="upper left", fontsize=8)
        figure.autofmt_xdate()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        pyplot.close(figure)


def render_html(report: UsageReport) -> str:
    e = html.escape
    data = report.to_json()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Controlled compute of {e(report.tenant)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:.2em .6em;text-align:right}th{background:#eee}"
        ".problem{color:#c0392b;font-weight:bold}</style></head><body>",
        f"<h1>Controlled compute of tenant {e(report.tenant)}</h1>",
        f"<p>From {e(data['from'])} to {e(data['to'])}: {report.records} usage record(s).</p>",
    ]
    if report.chain_problems:
        parts.append("<p class='problem'>The usage record's chain does not hold:</p><ul>")
        parts += [f"<li class='problem'>{e(p)}</li>" for p in report.chain_problems]
        parts.append("</ul>")
    else:
        parts.append("<p>The usage record's hash chain holds.</p>")
    for name, periods in report.licenses.items():
        figures = data["licenses"][name]
        png = base64.b64encode(chart_png(name, periods)).decode("ascii")
        parts.append(f"<h2>ExportLicense {e(name)}</h2>")
        parts.append(
            f"<p>{figures['tppHours']:,.3f} TPP-hours, "
            f"{figures['acceleratorHours']:,.3f} accelerator-hours.</p>"
        )
        parts.append(
            f"<img id='chart-{e(name)}' alt='usage of {e(name)} against its cap' "
            f"src='data:image/png;base64,{png}'>"
        )
        parts.append(
            "<table><tr><th>from</th><th>to</th><th>TPP-hours</th><th>accelerator-hours</th>"
            "<th>average TPP</th><th>maxTPP</th><th>maxAccelerators</th></tr>"
        )
        for p in figures["periods"]:
            cap = "" if p["maxTPP"] is None else f"{p['maxTPP']:,.0f}"
            count_cap = "" if p["maxAccelerators"] is None else f"{p['maxAccelerators']:g}"
            parts.append(
                f"<tr><td>{e(p['start'])}</td><td>{e(p['end'])}</td><td>{p['tppHours']:,.3f}</td>"
                f"<td>{p['acceleratorHours']:,.3f}</td><td>{p['averageTPP']:,.1f}</td><td>{cap}</td>"
                f"<td>{count_cap}</td></tr>"
            )
        parts.append("</table>")
    if not report.licenses:
        parts.append("<p>No controlled compute was used under a license in this span.</p>")
    for title, counts in (
        ("Admissions by code", report.admissions),
        ("Denials by code", report.denials),
        ("Violations by code (running pods judged again)", report.violations),
    ):
        parts.append(f"<h2>{e(title)}</h2>")
        if counts:
            parts.append("<table><tr><th>code</th><th>count</th></tr>")
            parts += [
                f"<tr><td>{e(code)}</td><td>{count}</td></tr>" for code, count in sorted(counts.items())
            ]
            parts.append("</table>")
        else:
            parts.append("<p>None.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
