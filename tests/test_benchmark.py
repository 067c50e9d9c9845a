"""The NAR vs AR benchmark reports consistent fields (timings themselves are not tested)."""

from __future__ import annotations

import json
import math

import pytest
from nar_vs_ar import (
    DECODERS,
    MIXED_DURATIONS,
    STAGES,
    Setting,
    format_table,
    gemm_benchmark,
    main,
    run_benchmark,
    settings_from_args,
)


def test_tiny_run_reports_consistent_fields():
    settings = [Setting("one", (1.0,)), Setting("mixed", (0.6, 1.3))]
    report = run_benchmark("tiny", settings=settings, repeats=1, warmup=0, tokens_per_second=3.0)
    results = report["results"]
    assert [(r["setting"], r["decoder"]) for r in results] == [
        (s.name, d) for s in settings for d in DECODERS
    ]
    by_key = {(r["setting"], r["decoder"]): r for r in results}
    for r in results:
        assert len(r["times_s"]) == 1 and r["median_s"] == r["times_s"][0] > 0
        assert r["audio_seconds"] == pytest.approx(sum(r["durations_s"]))
        assert r["rtfx"] == pytest.approx(r["audio_seconds"] / r["median_s"])
        assert set(r["shares"]) == set(STAGES)
        assert sum(r["shares"].values()) == pytest.approx(1.0, abs=1e-9)
        assert all(share >= 0 for name, share in r["shares"].items() if name != "lm")
        assert sum(r["stage_seconds"].values()) == pytest.approx(r["median_s"])  # one repeat: mean == median
        assert math.isfinite(r["peak_memory_mib"])
    for setting in settings:
        ar = by_key[(setting.name, "ar")]
        one, two = by_key[(setting.name, "nar_1pass")], by_key[(setting.name, "nar_2pass")]
        assert one["speedup_vs_ar"] == pytest.approx(ar["median_s"] / one["median_s"])
        assert two["speedup_vs_ar"] == pytest.approx(ar["median_s"] / two["median_s"])
        assert two["median_s"] > one["median_s"]  # the same run, continued by a second pass
        assert ar["shares"]["bpe_head"] == 0 and one["shares"]["bpe_head"] > 0
        # same encoder and projector work for both decoders; NAR's second pass adds LM time only
        assert two["stage_seconds"]["encoder"] == one["stage_seconds"]["encoder"]
        assert one["tokens"] == ar["tokens"] == setting.tokens(3.0)
    assert by_key[("mixed", "ar")]["tokens"] == [2, 4]
    table = format_table(report)
    assert table.count("\n| ") == len(results) + 1  # header + one row per result
    assert report["meta"]["config"] == "tiny" and report["meta"]["repeats"] == 1


def test_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(
        [
            "--config",
            "tiny",
            "--durations",
            "0.8",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--decoders",
            "nar",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    report = json.loads(out.read_text())
    assert [r["decoder"] for r in report["results"]] == ["nar_1pass", "nar_2pass"]
    assert "speedup_vs_ar" not in report["results"][0]
    assert report["meta"]["command"].startswith("python benchmarks/nar_vs_ar.py --config tiny")
    assert "| b1_0.8s | nar_1pass |" in capsys.readouterr().out


def test_settings_selection():
    assert [s.name for s in settings_from_args(None, None)] == ["b1_5s", "b1_15s", "b1_30s", "b8_mixed"]
    assert settings_from_args(8, None)[0].durations == MIXED_DURATIONS
    assert [s.durations for s in settings_from_args(1, [5, 15])] == [(5.0,), (15.0,)]
    assert settings_from_args(2, [3, 4])[0].durations == (3.0, 4.0)
    assert settings_from_args(2, [3])[0].durations == (3.0, 3.0)
    assert Setting("x", (15.0,)).frames == [750] and Setting("x", (15.0,)).tokens(3.0) == [45]
    with pytest.raises(ValueError, match="needs --durations"):
        settings_from_args(3, None)


def test_gemm_mode_reports_throughput():
    result = gemm_benchmark(size=64, repeats=2, warmup=1)
    for dtype in ("float32", "bfloat16"):
        assert result[dtype]["tflops"] == pytest.approx(2 * 64**3 / result[dtype]["median_s"] / 1e12)


def test_gpu_check_runs_its_steps_on_a_cpu_smoke_config(tmp_path, capsys):
    """The GPU check runs end to end (here on the tiny config on the CPU): parity is skipped with the
    reason, and each batch size's audio is the fixed length mix."""
    import gpu_check

    report = gpu_check.main(
        [
            "--config",
            "tiny",
            "--device",
            "cpu",
            "--batch-sizes",
            "1",
            "3",
            "--repeats",
            "1",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert report["parity"]["status"].startswith("skipped")
    rows = report["throughput"]
    assert [r["batch_size"] for r in rows] == [1, 3]
    assert rows[1]["audio_s"] == pytest.approx(sum(gpu_check.LENGTH_MIX[:3]))
    assert all(r["rtfx"] == pytest.approx(r["audio_s"] / r["median_s"]) for r in rows)
    assert "| 3 |" in capsys.readouterr().out
    assert (tmp_path / "r.json").is_file()


def test_long_form_benchmark_reports_every_length(tmp_path, capsys):
    from bench_long_form import main as long_form_main

    out = tmp_path / "long.json"
    assert (
        long_form_main(["--config", "tiny", "--minutes", "0.5", "1", "--repeats", "1", "--json", str(out)])
        == 0
    )
    report = json.loads(out.read_text())
    assert [row["minutes"] for row in report["rows"]] == [0.5, 1.0]
    for row in report["rows"]:
        assert row["rate"] == pytest.approx(row["minutes"] * 60 / row["seconds"])
        assert row["peak_gb"] >= 0
    printed = capsys.readouterr().out
    assert "| 0.5 min |" in printed and "| 1 min |" in printed and "short clips" in printed
