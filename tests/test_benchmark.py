"""The NAR vs AR benchmark reports consistent fields (timings themselves are not tested)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mfu import gemm_shapes, mfu, model_flops
from nar_vs_ar import (
    DECODERS,
    MIXED_DURATIONS,
    STAGES,
    Setting,
    build_models,
    format_table,
    gemm_benchmark,
    main,
    run_benchmark,
    settings_from_args,
    tiny_benchmark_config,
)
from torch.utils.flop_counter import FlopCounterMode

from granite_nar.model.modeling_audio import project_audio


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
    assert "mfu" not in report["results"][0] and "gemm_peak" not in report["meta"]  # only with --mfu
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


# -- model FLOP utilisation ---------------------------------------------------------------------------------
def _counted(fn) -> int:
    """FLOPs ``torch.utils.flop_counter`` sees while ``fn`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.fixture(scope="module")
def eager_tiny():
    """The tiny benchmark model with eager attention: its attention matmuls are plain ``matmul`` calls that
    the FLOP counter sees. (Under "sdpa" on a CPU the editor's and the Q-Former's attention run in
    ``aten._scaled_dot_product_flash_attention_for_cpu``, which the counter has no formula for and counts
    as 0; the encoder's block attention runs sdpa's math kernel, i.e. matmuls, under either choice.)"""
    nar, _ = build_models("tiny", attn_implementation="eager")
    return nar


def test_analytic_flops_equal_the_flop_counter_on_the_tiny_model(eager_tiny):
    """Batch of 1, 300 frames: whole attention blocks (50), Q-Former windows (15), pooling windows (4) and
    audio tokens (5), so that the model computes no padding and the count must agree exactly, stage by
    stage. Only matmuls and convolutions are counted on either side."""
    nar, cfg = eager_tiny, eager_tiny.config
    frames, draft = 300, 20
    assert frames % cfg.encoder_config.context_size == 0
    features = torch.randn(
        1, frames, cfg.encoder_config.input_dim, generator=torch.Generator().manual_seed(0)
    )
    mask = torch.ones(1, frames, dtype=torch.bool)
    expected = model_flops(cfg, [frames], [draft])
    assert expected["total"] == sum(v for k, v in expected.items() if k != "total")
    with torch.inference_mode():
        enc = nar.model.encoder(features, mask)
        assert _counted(lambda: nar.model.encoder(features, mask)) == expected["encoder"]
        pooled = enc.pooled_hidden_states[0]  # ceil(300 / 4) = 75 windows
        assert _counted(lambda: nar.model.bpe_argmax(pooled)) == expected["bpe_head"]
        lengths = torch.tensor([frames])
        embed_dtype = nar.model.language_model.embed_tokens.weight.dtype

        def project():
            return project_audio(nar.model.projector, cfg, enc.projector_input, lengths, embed_dtype)

        assert _counted(project) == expected["projector"]
        audio_embeds, audio_lengths = project()
        ids = [torch.arange(1, draft + 1)]
        assert (
            _counted(
                lambda: nar.generate(audio_embeds=audio_embeds, audio_lengths=audio_lengths, input_ids=ids)
            )
            == expected["editor"]
        )
        # the whole audio side is the three audio stages and nothing else
        assert _counted(lambda: nar.model.encode_audio(features, mask)) == (
            expected["encoder"] + expected["bpe_head"] + expected["projector"]
        )


def test_editor_flops_per_utterance_on_a_packed_batch(eager_tiny):
    """Two packed utterances (60 + 30 audio rows): attention is counted per utterance, not over the packed
    row, and a 2-token draft gets ``min_edit_sequence_length`` (8) slots, not 5."""
    nar, cfg = eager_tiny, eager_tiny.config
    frames, drafts = [300, 150], [20, 2]
    audio_lengths = torch.tensor([60, 30])
    audio_embeds = torch.randn(2, 60, cfg.text_config.hidden_size, generator=torch.Generator().manual_seed(1))
    ids = [torch.arange(1, n + 1) for n in drafts]
    with torch.inference_mode():
        counted = _counted(
            lambda: nar.generate(audio_embeds=audio_embeds, audio_lengths=audio_lengths, input_ids=ids)
        )
    assert counted == model_flops(cfg, frames, drafts)["editor"]
    two_passes = model_flops(cfg, frames, drafts, editing_passes=2)
    assert two_passes["editor"] == 2 * counted
    # a batch is the sum of its utterances, each on its own length
    singles = [model_flops(cfg, [t], [n]) for t, n in zip(frames, drafts, strict=True)]
    assert model_flops(cfg, frames, drafts) == {k: sum(s[k] for s in singles) for k in singles[0]}
    with pytest.raises(ValueError, match="one draft length per utterance"):
        model_flops(cfg, frames, [3])


def test_mfu_helper():
    out = mfu({"a": 2e12, "b": 1e12, "total": 3e12}, {"a": 1.0, "b": 2.0, "c": 1.0}, 4e12)
    assert out == pytest.approx({"a": 0.5, "b": 0.125, "total": 3e12 / 4.0 / 4e12})
    assert mfu({"a": 1.0}, {"a": 0.0}, 1.0) == {"a": None, "total": None}
    with pytest.raises(ValueError, match="no time"):
        mfu({"a": 1.0, "b": 1.0}, {"a": 1.0}, 1.0)


def test_cli_mfu_reports_utilisation(tmp_path, capsys):
    out = tmp_path / "mfu.json"
    main(
        [
            "--config",
            "tiny",
            "--batch-size",
            "2",
            "--durations",
            "0.8",
            "1.3",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--decoders",
            "nar",
            "--mfu",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    report = json.loads(out.read_text())
    cfg = tiny_benchmark_config()
    frames, tokens = [40, 65], [2, 4]  # 20 ms frames and 3 tokens/s of 0.8 s and 1.3 s
    gemm = report["meta"]["gemm_peak"]
    assert [(s["name"], s["m"], s["k"], s["n"]) for s in gemm["shapes"]] == gemm_shapes(cfg, frames, tokens)
    for shape in gemm["shapes"]:
        assert shape["tflops"] == pytest.approx(
            2 * shape["m"] * shape["k"] * shape["n"] / shape["median_s"] / 1e12
        )
    assert gemm["peak_tflops"] == max(s["tflops"] for s in gemm["shapes"]) > 0
    peak = gemm["peak_tflops"] * 1e12
    rows = report["results"]
    assert [r["decoder"] for r in rows] == ["nar_1pass", "nar_2pass"]
    for passes, row in enumerate(rows, start=1):
        assert row["tokens"] == tokens
        analytic = model_flops(cfg, frames, tokens, editing_passes=passes)
        assert row["flops"] == {
            "encoder": analytic["encoder"],
            "bpe_head": analytic["bpe_head"],
            "projector": analytic["projector"],
            "lm": analytic["editor"],
            "total": analytic["total"],
        }
        seconds = row["stage_seconds"]
        assert set(row["mfu"]) == {*STAGES, "total"}
        for stage in STAGES:
            assert 0 < row["mfu"][stage] <= 1
            assert row["mfu"][stage] == pytest.approx(row["flops"][stage] / seconds[stage] / peak)
        assert 0 < row["mfu"]["total"] <= 1
        assert row["mfu"]["total"] == pytest.approx(row["flops"]["total"] / sum(seconds.values()) / peak)
        assert sum(seconds.values()) == pytest.approx(row["median_s"])  # one repeat
    assert rows[1]["flops"]["lm"] == 2 * rows[0]["flops"]["lm"]
    printed = capsys.readouterr().out
    assert "| MFU total |" in printed and "GEMM peak" in printed


def test_compare_versions_runs_two_copies_of_one_version_side_by_side(tmp_path):
    import granite_nar

    # A process of its own: importing a second copy of the package re-registers the transformers Auto
    # classes with its own config and model classes.
    package = Path(granite_nar.__file__).parent
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "compare_versions.py"
    command = [
        sys.executable,
        str(script),
        "--before",
        str(package),
        "--config",
        "tiny",
        "--dtype",
        "float32",
        "--settings",
        "b1_5s",
        "b8_mixed",
        "--repeats",
        "1",
        "--json",
        str(tmp_path / "compare.json"),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "compare.json").read_text())
    assert [row["setting"] for row in report["rows"]] == ["b1_5s", "b8_mixed"]
    for row in report["rows"]:
        assert row["tokens_identical"]  # the same code on the same weights
        for side in ("before", "after"):
            assert row[side]["rtfx"] == pytest.approx(row["audio_s"] / row[side]["median_s"])
            assert 0 < row[side]["mfu"] <= 1
    assert run.stdout.count("tokens identical: True") == 2
