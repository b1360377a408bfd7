"""`arbstr bench` against a running gateway, and the benchmark report renderer."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import END, START, write_markdown
from typer.testing import CliRunner

from arbstr.cli import app
from arbstr.sim import SimProfile

from .conftest import SimSpec, StackFactory

runner = CliRunner()


def test_bench_json_counts_every_request_and_reads_overhead(stack: StackFactory) -> None:
    s = stack([SimSpec("a")])
    result = runner.invoke(app, ["bench", "-u", f"{s.url}/v1", "-n", "60", "-c", "4", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["requests"] == figures["ok"] == 60
    assert figures["errors"] == 0
    assert figures["p50_ms"] <= figures["p99_ms"]
    assert figures["overhead_p50_ms"] is not None  # from x-arbstr-overhead-ms
    assert len(s.sink.records) == 60


def test_bench_stream_table_and_failures_exit_1(stack: StackFactory) -> None:
    s = stack([SimSpec("a", SimProfile(chunks=5))])
    result = runner.invoke(app, ["bench", "-u", f"{s.url}/v1", "-n", "20", "-c", "2", "--stream"])
    assert result.exit_code == 0, result.output
    assert "first byte p50 ms" in result.output
    assert "status 200" in result.output
    # streams carry x-arbstr-overhead-ms too, so the stream bench reports the gateway's share
    overhead = next(line for line in result.output.splitlines() if "overhead p50 ms" in line)
    assert any(ch.isdigit() for ch in overhead), overhead
    broken = stack([SimSpec("b", SimProfile(failure_rate=1.0, failure_status=400))])
    result = runner.invoke(app, ["bench", "-u", f"{broken.url}/v1", "-n", "5", "-c", "1"])
    assert result.exit_code == 1
    assert "status 400" in result.output


def test_report_replaces_only_the_results_block(tmp_path: Path) -> None:
    row = {
        "mode": "stream",
        "concurrency": 16,
        "direct": {"rps": 50000.0, "p50_ms": 0.3, "errors": 0},
        "arbstr": {
            "rps": 5400.0,
            "p50_ms": 2.5,
            "errors": 0,
            "cpu_ms_per_req": 0.18,
            "rss_mb": 90.0,
            "ttfb_rps": 3300.0,
        },
        "overhead_p50_ms": 2.2,
        "overhead_p99_ms": 4.0,
        "ttfb_overhead_p50_ms": 0.9,
    }
    summary = {
        "server": "uvicorn",
        "transport": "http1",
        "workers": 1,
        "pinned": True,
        "client": "wrk",
        "idle_rss_mb": 73.0,
        "soak": {"seconds": 300, "rss_before_mb": 90.0, "rss_after_mb": 99.0, "rps": 8000.0},
        "recorded": {"answered": 100, "rows_written": 100.0, "spilled": 0.0, "dropped": 0.0},
        "results": [row],
    }
    doc = tmp_path / "b.md"
    doc.write_text(f"# Title\nbefore\n{START}\nold\n{END}\nafter\n")
    write_markdown(summary, doc)
    text = doc.read_text()
    assert text.startswith("# Title\nbefore\n") and text.endswith("after\n")
    assert "old" not in text
    assert "| stream | 16 | 50000 | 5400 |" in text
    assert "0.90 (at 3,300/s)" in text
    assert "(+10.0%)" in text
    assert "100 requests answered" in text and "100 rows written" in text
    assert "at least 9.3x the gateway's rate in every row" in text and "fine" in text
