"""The usage record: run intervals into TPP-hours, and a hash chain that shows edits, gaps and
reordering (engine, and the CLI on an exported folder); its writer against an in-memory API
(the leader's checkpoint, every replica's denials, retention and takeover by day label)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from computegate.cli import main
from computegate.engine.compliance import rejudge
from computegate.engine.usage import (
    GENESIS,
    Admission,
    Checkpoint,
    Interval,
    TenantCount,
    chain_record,
    count_period,
    record_content,
    verify_chain,
)
from computegate.webhook.tally import DenialTally, period_key, tally_name
from computegate.webhook.usage import CHECKPOINT, UsageRecorder, heads_in_audit_log, period_of
from tests.unit.conftest import StateFactory, license_, node, obj, pod, tenant
from tests.unit.memory_kube import MemoryKube

H100 = "NVIDIA-H100-80GB-HBM3"

DAY = datetime(2026, 6, 1, tzinfo=UTC)


def test_usage_is_the_run_interval_times_the_controlled_tpp_clipped_to_the_period() -> None:
    intervals = [
        Interval("a", "acme", "lic", 15832, 1, DAY - timedelta(hours=1), DAY + timedelta(hours=2)),
        Interval("b", "acme", "lic", 31664, 2, DAY + timedelta(hours=23)),  # still running
        Interval("c", "other", "x", 999, 1, DAY),
    ]
    figures = count_period(intervals, [], DAY, DAY + timedelta(days=1))["acme"].hours()
    assert figures == {"lic": {"tppHours": 2 * 15832 + 31664, "acceleratorHours": 2 + 2}}


def test_a_checkpoint_covers_what_ended_before_it_and_the_rest_is_counted_once() -> None:
    end = DAY + timedelta(days=1)
    hour = timedelta(hours=1)
    ended_early = Interval("a", "acme", "lic", 100, 1, DAY + hour, DAY + 2 * hour)
    ended_late = Interval("b", "acme", "lic", 100, 1, DAY + hour, DAY + 5 * hour)
    still_running = Interval("c", "acme", "lic", 100, 1, DAY + 3 * hour)
    admitted = [Admission(uid, "acme", "Licensed", DAY + hour) for uid in "abc"]
    admitted.append(Admission("d", "acme", "JurisdictionAllowed", DAY + 4 * hour))
    until = DAY + 3 * hour
    everything = [ended_early, ended_late, still_running]
    checkpoint = Checkpoint(DAY, until, count_period(everything, admitted, DAY, end, until=until))
    assert checkpoint.tenants["acme"].seconds == {"lic": [100 * 3600, 3600]}  # only the run that ended
    assert checkpoint.tenants["acme"].admissions == {"Licensed": 3}
    kept = Checkpoint.from_dict(checkpoint.to_dict())
    assert kept == checkpoint or kept.to_dict() == checkpoint.to_dict()

    # A new leader that never saw ``a`` (it ended before it started) loses nothing, and counts
    # ``b``, ``c`` and the admissions it saw once.
    seen_by_the_next = [ended_late, still_running]
    counted = count_period(seen_by_the_next, admitted[1:], DAY, end, adopted=kept)["acme"]
    assert counted.hours() == count_period(everything, admitted, DAY, end)["acme"].hours()
    assert counted.admissions == {"Licensed": 3, "JurisdictionAllowed": 1}
    # A checkpoint of another period is not used.
    other = Checkpoint(DAY - timedelta(days=1), until, kept.tenants)
    assert count_period(seen_by_the_next, [], DAY, end, adopted=other)["acme"].hours()["lic"]["tppHours"] == (
        100 * 4 + 100 * 21
    )


def test_a_record_states_the_lowest_cap_of_the_period_and_the_pods_in_violation_by_code() -> None:
    seen = TenantCount()
    seen.sight("lic", 1_000_000)
    seen.sight("lic", 2_000_000, 8)  # raised later, with a count cap: the lowest of each holds
    seen.violations["LicenseRevoked"] |= {"uid-a", "uid-b"}
    earlier = TenantCount()
    earlier.sight("lic", 500_000, 16)  # lowered (and raised again) before this leader watched
    earlier.violations["LicenseRevoked"].add("uid-a")  # the same pod, seen by the earlier leader
    earlier.violations["LicenseExpired"].add("uid-c")
    interval = Interval("uid-a", "acme", "lic", 1000.0, 1.0, DAY, DAY + timedelta(hours=1))
    checkpoint = Checkpoint.from_dict(Checkpoint(DAY, DAY, {"acme": earlier}).to_dict())
    counts = count_period(
        [interval], [], DAY, DAY + timedelta(days=1), adopted=checkpoint, sighted={"acme": seen}
    )
    content = record_content("acme", "2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z", counts["acme"], {})
    assert content["licenses"] == {
        "lic": {
            "tppHours": "1000.000000",
            "acceleratorHours": "1.000000",
            "maxTPP": "500000.000000",
            "maxAccelerators": "8.000000",
        }
    }
    assert content["violations"] == {"LicenseExpired": 1, "LicenseRevoked": 2}


def test_a_tenant_with_a_license_and_nothing_else_gets_no_record_and_an_edited_cap_is_caught() -> None:
    idle = TenantCount()
    idle.sight("lic", 1000)
    assert not idle.active
    busy = TenantCount()
    busy.violations["LicenseRevoked"].add("uid-a")
    assert busy.active
    busy.seconds["lic"] = [3600 * 2000.0, 3600.0]
    busy.sight("lic", 1000)
    record = chain_record(
        record_content("acme", "a", "b", busy, {"NoLicense": 1}), sequence=0, previous=GENESIS
    )
    assert verify_chain([("r", record)]) == []
    for edit in (
        {**record, "licenses": {"lic": {**record["licenses"]["lic"], "maxTPP": "5000.000000"}}},
        {**record, "violations": {}},
    ):
        (problem,) = verify_chain([("r", edit)])
        assert "edited" in problem.what


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


def test_verify_names_the_file_and_document_of_an_unreadable_export(tmp_path: Path) -> None:
    (tmp_path / "acme.0.yaml").write_text("kind: UsageRecord\nspec: {sequence: [0\n")
    with pytest.raises(SystemExit) as refused:
        main(["verify", "--folder", str(tmp_path)])
    message = str(refused.value)
    assert message.startswith(f"computegate: {tmp_path / 'acme.0.yaml'}: document 1, line ")
    assert "not valid YAML" in message and "\n" not in message


# ----- the writer (webhook/usage.py, webhook/tally.py) against an in-memory API -----
RECORDS = "/apis/computegate.io/v1alpha1/usagerecords"
CONFIGMAPS = "/api/v1/namespaces/cg/configmaps"
H100_TPP = 15832


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def running_pod(name: str, started: datetime) -> dict[str, Any]:
    body = pod(name, "team", nodeName="h100-node")
    body["metadata"].update(
        uid=f"uid-{name}",
        creationTimestamp=started.isoformat().replace("+00:00", "Z"),
        annotations={"computegate.io/code": "Licensed", "computegate.io/license": "lic"},
    )
    body["status"] = {"phase": "Running", "startTime": started.isoformat().replace("+00:00", "Z")}
    return body


def replica(
    make_state: StateFactory, kube: MemoryKube, clock: Clock, identity: str, *pods: dict[str, Any]
) -> UsageRecorder:
    state = make_state(node("h100-node", H100), tenant("acme", "CN", namespaces=["team"]), *pods)
    tally = DenialTally(kube, "cg", identity, clock=clock)  # type: ignore[arg-type]
    return UsageRecorder(kube, state, tally, clock=clock)  # type: ignore[arg-type]


def gone(recorder: UsageRecorder, name: str) -> None:
    recorder.state.remove("Pod", name, "team")


def records(kube: MemoryKube) -> list[dict[str, Any]]:
    return sorted(kube.under(RECORDS).values(), key=lambda r: int(r["spec"]["sequence"]))


async def test_a_new_leader_continues_from_the_checkpoint_and_loses_no_run_that_ended_before_it(
    make_state: StateFactory,
) -> None:
    kube, clock = MemoryKube(), Clock(DAY + timedelta(hours=1))
    early, late = (
        running_pod("early", DAY + timedelta(hours=1)),
        running_pod("late", DAY + timedelta(hours=2)),
    )
    first = replica(make_state, kube, clock, "first", early, late)
    first.observe()
    await first.flush()
    clock.at = DAY + timedelta(hours=3)
    gone(first, "early")  # ran two hours
    first.observe()
    await first.flush()
    clock.at = DAY + timedelta(hours=4)
    first.observe()
    await first.flush()  # the checkpoint now holds the run that ended
    assert "computegate-usage-checkpoint" in kube.under(CONFIGMAPS)

    # The first leader dies; a replica that started after ``early`` ended takes over.
    clock.at = DAY + timedelta(hours=5)
    second = replica(make_state, kube, clock, "second", late)
    second.observe()
    await second.flush()
    clock.at = DAY + timedelta(hours=6)
    gone(second, "late")  # ran four hours
    second.observe()
    clock.at = DAY + timedelta(days=1, minutes=1)
    second.observe()
    await second.flush()

    (record,) = records(kube)
    assert record["metadata"]["labels"] == {
        "computegate.io/tenant": "acme",
        "computegate.io/day": "2026-06-01",
    }
    spec = record["spec"]
    assert spec["licenses"] == {"lic": {"tppHours": f"{6 * H100_TPP:.6f}", "acceleratorHours": "6.000000"}}
    assert spec["admissions"] == {"Licensed": 2}


async def test_every_replicas_denials_reach_the_record_once(make_state: StateFactory) -> None:
    kube, clock = MemoryKube(), Clock(DAY + timedelta(hours=1))
    other = replica(make_state, kube, clock, "other_1_abc")
    leader = replica(make_state, kube, clock, "leader_2_def")
    await leader.flush()  # the chain starts with this day
    for _ in range(2):
        other.denied("acme", "LicenseCapExceeded")
    other.denied(None, "UnknownTenant")  # no tenant: nowhere to count it
    await other.tally.write()
    await other.tally.write()  # a write retried after a lost answer: the counts are absolute
    leader.denied("acme", "NoLicense")  # the leader's own, not written yet
    assert {name for name in kube.under(CONFIGMAPS) if "denials" in name} == {
        "computegate-denials-other-1-abc"
    }

    clock.at = DAY + timedelta(days=1, minutes=1)
    await leader.flush()
    (record,) = records(kube)
    assert record["spec"]["denials"] == {"LicenseCapExceeded": 2, "NoLicense": 1}
    assert record["spec"]["licenses"] == {} and record["spec"]["admissions"] == {}

    # The other replica dies; its tally is kept while a period it holds can still be written.
    clock.at = DAY + timedelta(days=3, minutes=1)
    await leader.flush()
    assert "computegate-denials-other-1-abc" in kube.under(CONFIGMAPS)
    clock.at = DAY + timedelta(days=4, minutes=1)
    await leader.flush()
    assert "computegate-denials-other-1-abc" not in kube.under(CONFIGMAPS)


async def test_a_new_leader_lists_only_the_last_days_records_a_page_at_a_time_to_continue_the_chain(
    make_state: StateFactory,
) -> None:
    kube, clock = MemoryKube(), Clock(DAY + timedelta(days=2, minutes=1))
    previous = GENESIS
    for sequence, day in enumerate((DAY - timedelta(days=30), DAY, DAY + timedelta(days=1))):
        record = chain_record(
            {
                "tenant": "acme",
                "periodStart": day.isoformat(),
                "periodEnd": (day + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
            },
            sequence=sequence,
            previous=previous,
        )
        previous = record["hash"]
        labels = {"computegate.io/day": day.strftime("%Y-%m-%d")}
        await kube.post(RECORDS, {"metadata": {"name": f"acme.{sequence}", "labels": labels}, "spec": record})
    leader = replica(make_state, kube, clock, "leader", running_pod("p", DAY + timedelta(days=2)))
    leader.observe()
    await leader.flush()
    lists = [(path, selector) for verb, path, selector in kube.requests if verb == "list" and path == RECORDS]
    assert lists == [(RECORDS, "computegate.io/day in (2026-06-01,2026-06-02,2026-06-03)")]
    assert leader.head == (2, previous)
    clock.at = DAY + timedelta(days=3, minutes=1)
    leader.observe()
    await leader.flush()
    newest = records(kube)[-1]["spec"]
    assert newest["sequence"] == 3 and newest["previousHash"] == previous
    assert verify_chain([(f"r{i}", r["spec"]) for i, r in enumerate(records(kube))]) == []


async def test_retention_deletes_the_days_it_no_longer_keeps_by_label_in_one_request(
    make_state: StateFactory,
) -> None:
    kube = MemoryKube()
    for age in (40, 36, 35, 1, 0):
        day = (DAY - timedelta(days=age)).strftime("%Y-%m-%d")
        await kube.post(RECORDS, {"metadata": {"name": f"acme.{day}", "labels": {"computegate.io/day": day}}})
    leader = replica(make_state, kube, Clock(DAY + timedelta(hours=12)), "leader")
    await leader._retain(DAY + timedelta(hours=12))
    assert sorted(kube.under(RECORDS)) == ["acme.2026-04-27", "acme.2026-05-31", "acme.2026-06-01"]
    (delete,) = [r for r in kube.requests if r[0] == "deletecollection"]
    assert delete[2].startswith("computegate.io/day,computegate.io/day notin (2026-04-27,")


async def test_kube_pages_follows_continue_tokens_and_never_deletes_a_whole_collection() -> None:
    from computegate.webhook.kube import Kube

    asked: list[dict[str, str]] = []
    answers = [
        {"items": [{"n": 1}, {"n": 2}], "metadata": {"continue": "next"}},
        {"items": [{"n": 3}], "metadata": {}},
    ]

    def call(method: str, path: str, body: Any = None, query: Any = None) -> dict[str, Any]:
        asked.append(dict(query))
        return answers[len(asked) - 1]

    kube = Kube(api=None, configuration=None)
    kube._call = call  # type: ignore[method-assign]
    pages = [page async for page in kube.pages(RECORDS, selector="a=b", limit=2)]
    assert pages == [[{"n": 1}, {"n": 2}], [{"n": 3}]]
    assert asked == [
        {"limit": "2", "labelSelector": "a=b"},
        {"limit": "2", "labelSelector": "a=b", "continue": "next"},
    ]
    with pytest.raises(ValueError, match="label selector"):
        await kube.delete_collection(RECORDS, selector="")
    kube.urgent.shutdown()


async def test_a_refused_checkpoint_is_tried_again_a_minute_later_and_the_records_are_still_written(
    make_state: StateFactory,
) -> None:
    from kubernetes.client.exceptions import ApiException

    kube, clock = MemoryKube(), Clock(DAY + timedelta(hours=1))
    refused: list[str] = []
    store = kube.post

    async def post(path: str, body: Any, *, urgent: bool = True) -> dict[str, Any]:
        if body["metadata"]["name"] == "computegate-usage-checkpoint":
            refused.append(path)
            raise ApiException(status=422, reason="Unprocessable Entity")  # as for a ConfigMap over 1 MiB
        return await store(path, body, urgent=urgent)

    kube.post = post  # type: ignore[method-assign]
    leader = replica(make_state, kube, clock, "leader", running_pod("p", DAY + timedelta(minutes=30)))
    leader.observe()
    await leader.flush()
    clock.at += timedelta(seconds=30)
    await leader.flush()
    assert len(refused) == 1  # not at every pass
    clock.at += timedelta(seconds=31)
    await leader.flush()
    assert len(refused) == 2
    clock.at = DAY + timedelta(days=1, minutes=1)
    leader.observe()
    await leader.flush()
    (record,) = records(kube)
    assert record["spec"]["licenses"]["lic"]["acceleratorHours"] == "23.500000"


def licensed_replica(
    make_state: StateFactory, kube: MemoryKube, clock: Clock, identity: str, *bodies: dict[str, Any]
) -> UsageRecorder:
    """Three tenants, each with a license and a namespace of its own."""
    state = make_state(
        node("h100-node", H100),
        *(tenant(name, "CN", namespaces=[f"ns-{name}"]) for name in ("acme", "globex", "initech")),
        *(license_(f"lic-{name}", name, max_tpp=100_000) for name in ("acme", "globex", "initech")),
        *bodies,
    )
    tally = DenialTally(kube, "cg", identity, clock=clock)  # type: ignore[arg-type]
    return UsageRecorder(kube, state, tally, clock=clock)  # type: ignore[arg-type]


def tenant_pod(tenant_name: str, started: datetime) -> dict[str, Any]:
    body = running_pod(f"p-{tenant_name}", started)
    body["metadata"].update(namespace=f"ns-{tenant_name}")
    body["metadata"]["uid"] = f"uid-{tenant_name}"
    body["metadata"]["annotations"]["computegate.io/license"] = f"lic-{tenant_name}"
    return body


async def test_the_record_carries_the_lowest_cap_of_the_day_and_the_violations_judged(
    make_state: StateFactory,
) -> None:
    kube, clock = MemoryKube(), Clock(DAY + timedelta(hours=1))
    leader = licensed_replica(make_state, kube, clock, "leader", tenant_pod("acme", DAY))
    state = leader.state
    leader.observe(rejudge(state, at=clock()))
    await leader.flush()  # the chain starts with this day
    clock.at = DAY + timedelta(hours=2)
    lowered = license_("lic-acme", "acme", max_tpp=10_000, revoked=True)
    state.upsert(obj(lowered))
    findings = rejudge(state, at=clock())
    assert [(f.uid, f.code.value, f.enforced) for f in findings] == [("uid-acme", "LicenseRevoked", True)]
    leader.observe(findings)
    clock.at = DAY + timedelta(hours=3)
    state.upsert(obj(license_("lic-acme", "acme", max_tpp=100_000)))  # restored: not in violation
    leader.observe(rejudge(state, at=clock()))
    clock.at = DAY + timedelta(days=1, minutes=1)
    leader.observe(rejudge(state, at=clock()))
    await leader.flush()

    (record,) = records(kube)  # the idle tenants' licenses alone make no record
    spec = record["spec"]
    assert spec["tenant"] == "acme"
    assert spec["licenses"]["lic-acme"]["maxTPP"] == "10000.000000"
    assert "maxAccelerators" not in spec["licenses"]["lic-acme"]
    assert spec["violations"] == {"LicenseRevoked": 1}
    assert verify_chain([("r", spec)]) == []


async def test_a_leader_that_dies_partway_through_a_days_records_leaves_the_rest_to_the_next(
    make_state: StateFactory,
) -> None:
    kube, clock = MemoryKube(), Clock(DAY + timedelta(hours=1))
    pods = [tenant_pod(name, DAY) for name in ("acme", "globex", "initech")]
    first = licensed_replica(make_state, kube, clock, "first", *pods)
    first.observe()
    await first.flush()
    clock.at = DAY + timedelta(hours=12)
    first.observe()
    await first.flush()  # a checkpoint of the day

    store = kube.post
    posted: list[str] = []

    async def dies_after_one_record(path: str, body: Any, *, urgent: bool = True) -> dict[str, Any]:
        if path == RECORDS and posted:
            raise ConnectionError("the leader's process ends here")
        posted.append(body["metadata"]["name"])
        return await store(path, body, urgent=urgent)

    kube.post = dies_after_one_record  # type: ignore[method-assign]
    clock.at = DAY + timedelta(days=1, minutes=1)
    first.observe()
    with pytest.raises(ConnectionError):
        await first.flush()
    assert [r["spec"]["tenant"] for r in records(kube)] == ["acme"]
    kube.post = store  # type: ignore[method-assign]

    # A new leader that started after the day closed: its view and the checkpoint hold the rest.
    clock.at = DAY + timedelta(days=1, minutes=2)
    second = licensed_replica(make_state, kube, clock, "second", *pods)
    await second.read_head(None)
    second.observe()
    await second.flush()
    written = records(kube)
    assert [(r["spec"]["tenant"], r["spec"]["sequence"]) for r in written] == [
        ("acme", 0),
        ("globex", 1),
        ("initech", 2),
    ]
    assert verify_chain([(r["metadata"]["name"], r["spec"]) for r in written]) == []
    for r in written:
        (figures,) = r["spec"]["licenses"].values()
        assert figures["acceleratorHours"] == "24.000000"

    # A third leader finds the day complete and writes nothing again.
    third = licensed_replica(make_state, kube, clock, "third", *pods)
    third.observe()
    await third.flush()
    assert len(records(kube)) == 3


async def test_a_deleted_checkpoint_is_created_again(make_state: StateFactory) -> None:
    kube, clock = MemoryKube(), Clock(DAY + timedelta(hours=1))
    leader = replica(make_state, kube, clock, "leader", running_pod("a", DAY + timedelta(hours=1)))
    leader.observe()
    await leader.flush()
    clock.at += timedelta(minutes=2)
    gone(leader, "a")
    leader.observe()
    await leader.flush()
    assert CHECKPOINT in kube.under(CONFIGMAPS)
    await kube.delete(f"{CONFIGMAPS}/{CHECKPOINT}")
    for minute in range(4, 8):
        clock.at = DAY + timedelta(hours=1, minutes=minute)
        leader.state.upsert(obj(running_pod(f"p{minute}", clock.at)))
        leader.observe()
        await leader.flush()
    assert CHECKPOINT in kube.under(CONFIGMAPS)


async def test_only_a_replicas_own_tally_with_whole_counts_is_folded(make_state: StateFactory) -> None:
    kube, clock = MemoryKube(), Clock(DAY + timedelta(hours=1))
    leader = replica(make_state, kube, clock, "leader")
    for _ in range(5):
        leader.denied("acme", "NoLicense")
    day = period_key(period_of(DAY, timedelta(days=1)))
    label = {"app.kubernetes.io/component": "denial-tally"}

    def tally(name: str, identity: str, count: object) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": label, "annotations": {"computegate.io/replica": identity}},
            "data": {"denials.json": json.dumps({day: {"acme": {"NoLicense": count}}})},
        }

    await kube.post(CONFIGMAPS, tally("anything", "other", 7))  # not named after its replica
    await kube.post(CONFIGMAPS, tally(tally_name("forger"), "forger", -5))  # not a count
    await kube.post(CONFIGMAPS, tally(tally_name("other"), "other", 2))
    totals = await leader.tally.fold(period_of(DAY, timedelta(days=1)))
    assert totals == {"acme": {"NoLicense": 7}}  # its own 5 and the other replica's 2


def test_long_tenant_names_make_valid_distinct_record_names_and_labels() -> None:
    from computegate.webhook.usage import record_name, tenant_label

    label_pattern = re.compile(r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$")
    start = datetime(2026, 6, 1, tzinfo=UTC)
    first, second = "a" * 62 + "-" + "x" * 190, "a" * 62 + "-" + "y" * 190  # same first 243
    assert tenant_label("acme") == "acme"
    assert record_name("acme", start, timedelta(days=1)) == "acme.2026-06-01"
    labels = {tenant_label(first), tenant_label(second)}
    names = {record_name(first, start, timedelta(days=1)), record_name(second, start, timedelta(days=1))}
    assert len(labels) == 2 and all(len(v) <= 63 and label_pattern.match(v) for v in labels)
    assert len(names) == 2 and all(len(v) <= 253 and v.endswith(".2026-06-01") for v in names)
