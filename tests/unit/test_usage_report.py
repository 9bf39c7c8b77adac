"""``computegate report usage``: from an exported folder of usage records to JSON, CSV and an
HTML page whose chart a real headless browser (Chromium from the distribution) shows."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.cli import main
from computegate.engine.usage import GENESIS, chain_record
from computegate.usagereport import USAGE_COLOR

DAY = datetime(2026, 6, 1, tzinfo=UTC)
H100_TPP = 15832


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def export(folder: Path, days: int = 5) -> None:
    """Five days of acme using 1..5 H100s all day under a 4-H100 license, and one other tenant."""
    previous, sequence = GENESIS, 0
    for day in range(days):
        for tenant, gpus in (("acme", day + 1), ("other", 1)):
            start = DAY + timedelta(days=day)
            content: dict[str, Any] = {
                "tenant": tenant,
                "periodStart": stamp(start),
                "periodEnd": stamp(start + timedelta(days=1)),
                "licenses": {
                    f"{tenant}-lic": {
                        "tppHours": f"{gpus * H100_TPP * 24:.6f}",
                        "acceleratorHours": f"{gpus * 24:.6f}",
                        "maxTPP": f"{4 * H100_TPP:.6f}",
                        # The accelerator cap, on the days the license had one.
                        **({"maxAccelerators": "4.000000"} if day == 1 else {}),
                    }
                },
                "admissions": {"Licensed": 1},
                "denials": {"LicenseCapExceeded": 2} if gpus > 4 else {},
                "violations": {"LicenseRevoked": 1} if day == days - 1 and tenant == "acme" else {},
            }
            record = chain_record(content, sequence=sequence, previous=previous)
            body = {
                "apiVersion": "computegate.io/v1alpha1",
                "kind": "UsageRecord",
                "metadata": {"name": f"{tenant}.{day}"},
                "spec": record,
            }
            (folder / f"{tenant}.{day}.yaml").write_text(yaml.safe_dump(body))
            previous, sequence = record["hash"], sequence + 1


def report(
    folder: Path,
    fmt: str,
    capsys: Any,
    *,
    start: str = "2026-06-01T00:00:00Z",
    end: str = "2026-06-04T00:00:00Z",
) -> str:
    code = main(
        [
            "report",
            "usage",
            "--tenant",
            "acme",
            "--from",
            start,
            "--to",
            end,
            "--folder",
            str(folder),
            "--format",
            fmt,
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    return str(out.out)


def test_the_json_report_sums_the_span_per_license_with_the_cap(tmp_path: Path, capsys: Any) -> None:
    export(tmp_path)
    data = json.loads(report(tmp_path, "json", capsys))
    lic = data["licenses"]["acme-lic"]
    assert lic["tppHours"] == (1 + 2 + 3) * H100_TPP * 24 and lic["acceleratorHours"] == 6 * 24
    assert [p["averageTPP"] for p in lic["periods"]] == [H100_TPP, 2 * H100_TPP, 3 * H100_TPP]
    assert {p["maxTPP"] for p in lic["periods"]} == {4 * H100_TPP}
    assert [p["maxAccelerators"] for p in lic["periods"]] == [None, 4, None]
    assert data["admissions"] == {"Licensed": 3} and data["chainProblems"] == []


def test_denials_and_violations_by_code_are_reported(tmp_path: Path, capsys: Any) -> None:
    export(tmp_path)
    data = json.loads(report(tmp_path, "json", capsys, end="2026-06-06T00:00:00Z"))
    assert data["denials"] == {"LicenseCapExceeded": 2} and data["violations"] == {"LicenseRevoked": 1}


def test_the_csv_report_has_a_row_per_license_and_period(tmp_path: Path, capsys: Any) -> None:
    export(tmp_path)
    rows = report(tmp_path, "csv", capsys).splitlines()
    assert rows[0].startswith("tenant,license,periodStart") and rows[0].endswith(",maxTPP,maxAccelerators")
    periods = [row.split(",") for row in rows if row.startswith("acme,acme-lic,")]
    assert [row[-1] for row in periods] == ["", "4", ""]
    assert {len(row) for row in csv.reader(rows)} == {9}  # every row has every column


def test_a_report_over_an_edited_record_says_the_chain_is_broken(tmp_path: Path, capsys: Any) -> None:
    export(tmp_path)
    path = tmp_path / "acme.1.yaml"
    body = yaml.safe_load(path.read_text())
    body["spec"]["licenses"]["acme-lic"]["tppHours"] = "1.000000"
    path.write_text(yaml.safe_dump(body))
    assert "edited" in json.loads(report(tmp_path, "json", capsys))["chainProblems"][0]


def test_a_bare_date_is_an_input_error(tmp_path: Path, capsys: Any) -> None:
    code = main(
        [
            "report",
            "usage",
            "--tenant",
            "acme",
            "--from",
            "2026-06-01",
            "--to",
            "2026-06-02T00:00:00Z",
            "--folder",
            str(tmp_path),
        ]
    )
    assert code == 2 and "RFC 3339" in capsys.readouterr().err


def _browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "the HTML report test needs Chromium from the distribution's packages: "
            "apt-get install -y chromium (the Makefile's `make browser` does it)",
            pytrace=False,
        )
    return found


def test_the_html_report_shows_its_chart_in_a_headless_browser(tmp_path: Path, capsys: Any) -> None:
    browser = _browser()
    export(tmp_path)
    page = tmp_path / "report.html"
    page.write_text(report(tmp_path, "html", capsys))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1000,1000",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from matplotlib import image

    pixels = image.imread(str(shot))  # RGBA floats
    want = tuple(int(USAGE_COLOR[i : i + 2], 16) / 255 for i in (1, 3, 5))
    matching = (
        (abs(pixels[:, :, 0] - want[0]) < 0.04)
        & (abs(pixels[:, :, 1] - want[1]) < 0.04)
        & (abs(pixels[:, :, 2] - want[2]) < 0.04)
    ).sum()
    # The usage line, drawn 3 px wide over the chart's width, shows as hundreds of pixels.
    assert matching > 300, f"the chart's usage line is not on the screenshot ({matching} pixels of it)"
