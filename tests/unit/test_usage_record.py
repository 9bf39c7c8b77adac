"""The usage record: run intervals into TPP-hours, and a hash chain that shows edits, gaps and
reordering (engine only, plus the CLI on an exported folder)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from computegate.cli import main
from computegate.engine.usage import GENESIS, Interval, chain_record, usage_by_license, verify_chain
from computegate.webhook.usage import heads_in_audit_log, period_of

DAY = datetime(2026, 6, 1, tzinfo=UTC)


def test_usage_is_the_run_interval_times_the_controlled_tpp_clipped_to_the_period() -> None:
    intervals = [
        Interval("a", "acme", "lic", 15832, 1, DAY - timedelta(hours=1), DAY + timedelta(hours=2)),
        Interval("b", "acme", "lic", 31664, 2, DAY + timedelta(hours=23)),  # still running
        Interval("c", "other", "x", 999, 1, DAY),
    ]
    figures = usage_by_license(intervals, "acme", DAY, DAY + timedelta(days=1))
    assert figures == {"lic": {"tppHours": 2 * 15832 + 31664, "acceleratorHours": 2 + 2}}


def test_periods_are_utc_days() -> None:
    assert period_of(DAY + timedelta(hours=13), timedelta(days=1)) == DAY


def chain(count: int) -> list[tuple[str, dict[str, Any]]]:
    records: list[tuple[str, dict[str, Any]]] = []
    previous = GENESIS
    for sequence in range(count):
        content = {
            "tenant": "acme",
            "periodStart": f"day-{sequence}",
            "licenses": {"lic": {"tppHours": "1.0"}},
        }
        record = chain_record(content, sequence=sequence, previous=previous)
        records.append((f"acme.{sequence}", record))
        previous = record["hash"]
    return records


def test_an_intact_chain_verifies() -> None:
    assert verify_chain(chain(4)) == []


def test_an_edited_record_is_caught() -> None:
    records = chain(4)
    records[2][1]["licenses"]["lic"]["tppHours"] = "0.5"
    (problem,) = verify_chain(records)
    assert problem.sequence == 2 and "edited" in problem.what


def test_a_missing_record_is_caught() -> None:
    records = chain(4)
    del records[1]
    (problem,) = verify_chain(records)
    assert problem.sequence == 2 and "missing" in problem.what


def test_a_missing_last_record_is_caught_by_the_head_in_the_audit_log() -> None:
    records = chain(4)
    head = (3, records[3][1]["hash"])
    assert verify_chain(records[:3], heads=[head])[0].what.startswith("missing")


def test_a_rewritten_chain_is_caught_by_the_head_in_the_audit_log() -> None:
    records = chain(3)
    head = (2, records[2][1]["hash"])
    rewritten = chain(3)
    rewritten[2] = (
        rewritten[2][0],
        chain_record({"tenant": "acme"}, sequence=2, previous=rewritten[1][1]["hash"]),
    )
    assert verify_chain(rewritten) == []  # consistent on its own...
    assert "rewritten" in verify_chain(rewritten, heads=[head])[0].what  # ...but not with the audit log


def test_reordered_records_are_caught() -> None:
    records = chain(4)
    first, second = records[1][1], records[2][1]
    first["sequence"], second["sequence"] = 2, 1  # swapped places, hashes left alone
    problems = verify_chain(records)
    assert problems and all("edited" in p.what or "order" in p.what for p in problems)


def test_chain_heads_are_read_from_audit_annotations() -> None:
    lines = [
        '{"kind":"Event","annotations":{"validate.computegate.io/usage-chain-head":"3:' + "a" * 64 + '"}}',
        "not json",
        '{"kind":"Event","annotations":{"other":"x"}}',
    ]
    assert heads_in_audit_log(lines) == [(3, "a" * 64)]


def test_verify_reads_an_exported_folder_and_fails_on_an_edit(tmp_path: Path, capsys: Any) -> None:
    for name, record in chain(3):
        body = {
            "apiVersion": "computegate.io/v1alpha1",
            "kind": "UsageRecord",
            "metadata": {"name": name},
            "spec": record,
        }
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(body))
    assert main(["verify", "--folder", str(tmp_path)]) == 0
    edited = yaml.safe_load((tmp_path / "acme.1.yaml").read_text())
    edited["spec"]["licenses"]["lic"]["tppHours"] = "0.1"
    (tmp_path / "acme.1.yaml").write_text(yaml.safe_dump(edited))
    assert main(["verify", "--folder", str(tmp_path)]) == 1
    assert "record 1 (acme.1): edited" in capsys.readouterr().err
