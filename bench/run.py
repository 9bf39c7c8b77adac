"""Every benchmark in one run: the engine, the webhook's HTTPS endpoint against a minimal aiohttp
server and OPA, pod creates through the real API server, and the operator's memory.

    make bench                                    # = .venv/bin/python -m bench.run
    make bench-quick                              # = .venv/bin/python -m bench.run --quick
    .venv/bin/python -m bench.run --only https    # one part (engine, https, apiserver, memory)

Each part interleaves its configurations round by round (so background load falls on all of
them alike) and reports min, median and max over the rounds; every ratio is between medians
of the same run. The tables and the targets go to stdout and to ``OUT/results.md``, the plots
(PNG, matplotlib) to ``OUT/``: ``docs/benchmarks`` for a full run, ``bench/out`` with ``--quick``.
OPA and the load client (vegeta) are built with ``go install`` into
``~/.cache/computegate/bench-bin`` the first time (see ``bench/common.py``); the API server and
memory parts need the Kubernetes binaries (``make binaries``, ``COMPUTEGATE_ASSETS``).
Benchmarks are not tests: nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import apiserver, common, engine, https, memory

PARTS = ("engine", "https", "apiserver", "memory")

TARGET_HTTPS_VS_AIOHTTP = 0.8
TARGET_HTTPS_VS_OPA = 1.0
TARGET_DRY_VS_NONE = 1.5
TARGET_DRY_VS_CEL = 1.3
TARGET_ADDED_MS = 5.0
TARGET_ENGINE_RATE = 20_000
TARGET_ENGINE_RATIO = 1.2
TARGET_RSS_MIB = 300.0


def _ok(value: bool) -> str:
    return "yes" if value else "**no**"


def plot_https(rows: list[https.Row], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for color, server in zip(("tab:blue", "tab:orange", "tab:green"), https.SERVERS, strict=True):
        mine = sorted((r for r in rows if r.server == server), key=lambda r: r.concurrency)
        xs = [r.concurrency for r in mine]
        left.errorbar(
            xs,
            [r.p50_ms.median for r in mine],
            yerr=[
                [r.p50_ms.median - r.p50_ms.low for r in mine],
                [r.p50_ms.high - r.p50_ms.median for r in mine],
            ],
            marker="o",
            capsize=3,
            color=color,
            label=f"{server} p50",
        )
        left.plot(
            xs, [r.p99_ms.median for r in mine], linestyle=":", marker="x", color=color, label=f"{server} p99"
        )
        right.errorbar(
            xs,
            [r.throughput.median for r in mine],
            yerr=[
                [r.throughput.median - r.throughput.low for r in mine],
                [r.throughput.high - r.throughput.median for r in mine],
            ],
            marker="o",
            capsize=3,
            color=color,
            label=server,
        )
    left.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="latency ms", title="HTTPS latency")
    right.set(xscale="log", xlabel="concurrency", ylabel="requests/s", title="HTTPS throughput")
    for axes in (left, right):
        axes.set_xticks(list(https.CONCURRENCY), [str(c) for c in https.CONCURRENCY])
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path = out / "https.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_apiserver(results: apiserver.Results, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted(
        {(c.kind, c.dry, c.concurrency) for c in results.attacks}, key=lambda s: (s[2], s[0], not s[1])
    )
    figure, axes = plt.subplots(1, len(shapes), figsize=(3.0 * len(shapes), 4))
    for ax, (kind, dry, concurrency) in zip(axes, shapes, strict=True):
        names, p50, p99 = [], [], []
        for config in apiserver.CONFIGS:
            attacks = results.attacks.get(apiserver.Case(config, kind, dry, concurrency))
            if not attacks:
                continue
            names.append(
                config.replace("computegate-ledger-off", "cg ledger off").replace("computegate", "cg")
            )
            p50.append(common.Spread.of([a.p50_ms for a in attacks]).median)
            p99.append(common.Spread.of([a.p99_ms for a in attacks]).median)
        positions = range(len(names))
        ax.bar([p - 0.2 for p in positions], p50, width=0.4, label="p50")
        ax.bar([p + 0.2 for p in positions], p99, width=0.4, label="p99")
        ax.set_xticks(list(positions), names, rotation=30, fontsize=7)
        ax.set_title(apiserver.Case("", kind, dry, concurrency).label, fontsize=9)
        ax.set_ylabel("ms")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    path = out / "apiserver.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def engine_part(quick: bool) -> tuple[str, list[str]]:
    base, rounds = (engine.Size(100, 200, 50, 2_000), 5_000) if quick else (engine.BASE, 50_000)
    small, large = engine.run([base, base.times(10)], rounds, 10)
    text = engine.report(small, large, rounds, 10, "one thread, not pinned")
    rate = min(small.decide.rate, large.decide.rate)
    slowdown = small.decide.rate / large.decide.rate
    targets = [
        f"| engine ≥ {TARGET_ENGINE_RATE:,} decisions/s at 1x and 10x (decide) | {rate:,.0f} | "
        f"{_ok(rate >= TARGET_ENGINE_RATE)} |",
        f"| engine 10x state ≤ {TARGET_ENGINE_RATIO}x the time of 1x | {slowdown:.2f} | "
        f"{_ok(slowdown <= TARGET_ENGINE_RATIO)} |",
    ]
    return text, targets


def https_part(quick: bool, out: Path, rounds: int) -> tuple[str, list[str]]:
    rounds, requests = (2, 500) if quick else (rounds, 3_000)
    rows = https.run(rounds=rounds, requests=requests, quick=quick)
    by = {(r.server, r.concurrency): r.throughput.median for r in rows}
    targets = []
    for c in https.CONCURRENCY:
        vs_aiohttp = by[("computegate", c)] / by[("aiohttp", c)]
        vs_opa = by[("computegate", c)] / by[("opa", c)]
        targets.append(
            f"| webhook HTTPS ≥ {TARGET_HTTPS_VS_AIOHTTP}x minimal aiohttp, c={c} | {vs_aiohttp:.2f} | "
            f"{_ok(vs_aiohttp >= TARGET_HTTPS_VS_AIOHTTP)} |"
        )
        targets.append(
            f"| webhook HTTPS ≥ {TARGET_HTTPS_VS_OPA}x OPA, c={c} | {vs_opa:.2f} | "
            f"{_ok(vs_opa >= TARGET_HTTPS_VS_OPA)} |"
        )
    try:
        plot = plot_https(rows, out)
    except Exception as error:  # a missing plot never loses the figures
        print(f"no HTTPS plot: {error!r}")
        plot = out / "https.png"
    text = (
        f"{rounds} rounds of {requests:,} requests per server and concurrency; servers on one CPU, "
        f"client on the other where there are two.\n\n{https.table(rows)}\n\n![HTTPS]({plot.name})"
    )
    return text, targets


def apiserver_part(quick: bool, out: Path, work: Path, rounds: int) -> tuple[str, list[str]]:
    rounds, requests = (2, 40) if quick else (rounds, 200)
    results = apiserver.run(rounds=rounds, requests=requests, work=work)

    def p50(config: str, kind: str, dry: bool, c: int) -> float:
        return common.Spread.of(
            [a.p50_ms for a in results.attacks[apiserver.Case(config, kind, dry, c)]]
        ).median

    dry_none = p50("computegate", "gpu", True, 1) / p50("none", "gpu", True, 1)
    dry_cel = p50("computegate", "gpu", True, 1) / p50("cel", "gpu", True, 1)
    added = p50("computegate", "gpu", False, 1) - p50("none", "gpu", False, 1)
    targets = [
        f"| GPU dry-run create p50 ≤ {TARGET_DRY_VS_NONE}x no webhook | {dry_none:.2f} | "
        f"{_ok(dry_none <= TARGET_DRY_VS_NONE)} |",
        f"| GPU dry-run create p50 ≤ {TARGET_DRY_VS_CEL}x CEL | {dry_cel:.2f} | "
        f"{_ok(dry_cel <= TARGET_DRY_VS_CEL)} |",
        f"| real GPU create adds ≤ {TARGET_ADDED_MS:.0f} ms p50, ledger on (c=1) | {added:+.1f} ms | "
        f"{_ok(added <= TARGET_ADDED_MS)} |",
    ]
    try:
        plot = plot_apiserver(results, out)
    except Exception as error:  # a missing plot never loses the figures
        print(f"no API server plot: {error!r}")
        plot = out / "apiserver.png"
    text = (
        f"{rounds} rounds of {requests:,} creates per run ({2 * requests:,} at c=20).\n\n"
        f"{apiserver.table(results)}\n\n![API server]({plot.name})"
    )
    return text, targets


def memory_part(quick: bool, ready_within: float) -> tuple[str, list[str]]:
    scale = memory.scale_of(argparse.Namespace(quick=quick, scale=1.0))
    readings, seconds = memory.run(scale, workers=16, ready_within=120 if quick else ready_within)
    by = {r.run: r for r in readings}
    operator = by["operator"]
    state = by["state after LIST"]
    targets = [
        f"| operator RSS ≤ {TARGET_RSS_MIB:.0f} MB at {scale.pods:,} pods | {operator.rss_mib:,.0f} MiB"
        f"{'' if operator.ready_s is not None else ' (not ready)'} | "
        f"{_ok(operator.rss_mib <= TARGET_RSS_MIB and operator.ready_s is not None)} |",
        f"| ComputeGate's state after LIST ≤ {TARGET_RSS_MIB:.0f} MB at {scale.pods:,} pods (no Kopf) | "
        f"{state.rss_mib:,.0f} MiB | {_ok(state.rss_mib <= TARGET_RSS_MIB)} |",
    ]
    created = ", ".join(f"{phase} {s:.0f} s" for phase, s in seconds.items())
    return f"Objects created in: {created}.\n\n{memory.table(scale, readings)}", targets


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="every part, small: a few minutes")
    p.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    p.add_argument("--out", type=Path, help="where results.md and the plots go")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the HTTPS and API server parts")
    p.add_argument(
        "--ready-within", type=float, default=300, help="seconds the operator gets to be ready at 100k pods"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    import tempfile

    args = parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that every part stops the processes it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parts = args.only or list(PARTS)
    out: Path = args.out or (common.REPO / ("bench/out" if args.quick else "docs/benchmarks"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sections: list[str] = []
    targets: list[str] = []
    for part in parts:
        print(f"== {part}", flush=True)
        text: str
        found: list[str]
        if part == "engine":
            text, found = engine_part(args.quick)
        elif part == "https":
            text, found = https_part(args.quick, out, args.rounds)
        elif part == "apiserver":
            with tempfile.TemporaryDirectory(prefix="computegate-bench-apiserver-") as tmp:
                text, found = apiserver_part(args.quick, out, Path(tmp), args.rounds)
        else:
            text, found = memory_part(args.quick, args.ready_within)
        sections.append(f"### {part}\n\n{text}")
        targets += found
        print(text, flush=True)
        (out / "results.md").write_text("\n\n".join(["\n".join(targets), *sections]) + "\n")  # so far
    lines: list[Any] = [
        f"Command: `python -m bench.run{' --quick' if args.quick else ''}`"
        f"{''.join(f' --only {p}' for p in args.only or [])}; {common.machine()}; "
        f"{(time.monotonic() - started) / 60:.0f} min.",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
        *targets,
        "",
        *(f"{section}\n" for section in sections),
    ]
    report = "\n".join(lines) + "\n"
    (out / "results.md").write_text(report)
    print("\n".join(lines[: 5 + len(targets)]))
    print(f"\nwritten: {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
