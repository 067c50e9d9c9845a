"""Fine-tuning library: metrics, manifest reading, collator, presets, draft noise, losses and the trainer."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from tiny import BLANK, PAD, VOCAB, random_features, tiny_model

from granite_nar.testing.synthetic_speech import generate_sentences, grammar_vocabulary, train_tokenizer
from granite_nar.audio.feature_extraction_granite_speech_nar import GraniteSpeechNarFeatureExtractor
from granite_nar.lengths import num_bpe_windows, num_encoder_frames
from granite_nar.training import (
    DataCollatorForGraniteSpeechNar,
    DraftNoise,
    GraniteSpeechNarTrainer,
    ManifestFilter,
    SpeechDataset,
    TranscriptionEvaluator,
    WallClockBudget,
    apply_preset,
    char_error_rate,
    compute_nar_losses,
    count_parameters,
    ctc_symbols_needed,
    edit_distance,
    read_manifest,
    split_words,
    word_error_rate,
)
from granite_nar.training.presets import lora_linear_layers, trainable_parameter_names

sf = pytest.importorskip("soundfile")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A BPE tokenizer with the tiny model's vocabulary: pad = VOCAB-2, end of text (blank) = VOCAB-1."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(generate_sentences(300, seed=0) + grammar_vocabulary(), out, vocab_size=VOCAB)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert (len(tok), tok.pad_token_id, tok.eos_token_id) == (VOCAB, PAD, BLANK)
    return tok


# -- metrics -------------------------------------------------------------------------------------------------


def test_edit_distance_counts_each_error_kind():
    assert edit_distance("a b c".split(), "a x c".split()) == _counts(1, 0, 0, 3)
    assert edit_distance("a b c".split(), "a c".split()) == _counts(0, 1, 0, 3)
    assert edit_distance("a b c".split(), "a b c d".split()) == _counts(0, 0, 1, 3)
    # x+, a, b, c→d, d→e: 3 edits (deleting c and inserting x and e would be 4).
    assert edit_distance("a b c d".split(), "x a b d e".split()) == _counts(2, 0, 1, 4)
    assert edit_distance("a b c d e".split(), "b c e".split()) == _counts(0, 2, 0, 5)
    assert edit_distance([], "a b".split()) == _counts(0, 0, 2, 0)
    assert edit_distance("a b".split(), []) == _counts(0, 2, 0, 2)


def _counts(s, d, i, n):
    from granite_nar.training import EditCounts

    return EditCounts(s, d, i, n)


def test_wer_and_cer_by_hand():
    # Corpus rates add errors and reference lengths before dividing: (1 ins + 1 del) / (3 + 1) words.
    wer = word_error_rate(["the cat sat", "hello"], ["the cat sat on", ""])
    assert (wer.counts.insertions, wer.counts.deletions, wer.rate) == (1, 1, 0.5)
    assert char_error_rate("abc", "abd").rate == pytest.approx(1 / 3)
    assert char_error_rate("a b", "ab").rate == pytest.approx(1 / 3)  # the space is a character
    assert char_error_rate("a b", "ab", ignore_spaces=True).rate == 0.0
    # Normalisation: case and punctuation do not count; apostrophes inside words do.
    assert word_error_rate("Hello, World!", "hello world").rate == 0.0
    assert word_error_rate("don't", "dont").rate == 1.0
    assert word_error_rate("Hello", "hello", normalize=None).rate == 1.0


def test_empty_reference():
    assert word_error_rate("", "").rate == 0.0
    assert word_error_rate("", "a b").rate == 2.0  # an empty reference counts as one unit
    assert word_error_rate(["", "a"], ["x", "a"]).rate == 1.0


def test_cjk_text_is_scored_per_character():
    assert split_words("我爱 NLP 模型") == ["我", "爱", "NLP", "模", "型"]
    assert word_error_rate("我爱北京", "我爱南京").rate == pytest.approx(1 / 4)
    assert char_error_rate("我爱 北京", "我爱北京", ignore_spaces=True).rate == 0.0


def test_wer_matches_jiwer_on_random_sentences():
    jiwer = pytest.importorskip("jiwer")
    rng = random.Random(0)
    words = "a b c d e f".split()
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 8))) for _ in range(50)]
    hyps = [" ".join(rng.choices(words, k=rng.randint(0, 8))) for _ in range(50)]
    assert word_error_rate(refs, hyps).rate == pytest.approx(jiwer.wer(refs, hyps))
    assert char_error_rate(refs, hyps).rate == pytest.approx(jiwer.cer(refs, hyps))


# -- manifest ------------------------------------------------------------------------------------------------


def _write_wav(path, seconds):
    sf.write(str(path), np.zeros(int(seconds * 16000), dtype=np.float32), 16000)


def test_bad_manifest_rows_are_counted_and_skipped(tmp_path, tokenizer):
    (tmp_path / "wavs").mkdir()
    for name, seconds in [("ok", 2.0), ("short", 0.1), ("long", 9.0), ("noisy", 2.0), ("nodur", 1.5)]:
        _write_wav(tmp_path / "wavs" / f"{name}.wav", seconds)
    (tmp_path / "wavs" / "broken.wav").write_bytes(b"not a wav file")
    lines = [
        {"audio_path": "wavs/ok.wav", "text": "the red cat sees a dog", "duration_sec": 2.0, "cer": 0.1},
        "{not json",
        {"audio_path": "wavs/missing.wav", "text": "hello", "duration_sec": 1.0},
        {"audio_path": "wavs/ok.wav", "text": "   ", "duration_sec": 2.0},
        # 0.1 s = 5 encoder frames = 2 BPE windows: far too short for this transcript.
        {"audio_path": "wavs/short.wav", "text": "the red cat sees a dog", "duration_sec": 0.1, "cer": 0},
        {"audio_path": "wavs/long.wav", "text": "a cat", "duration_sec": 9.0},
        {"audio_path": "wavs/noisy.wav", "text": "a cat", "duration_sec": 2.0, "cer": 0.6},
        {"audio_path": "wavs/nodur.wav", "text": "a big dog"},  # duration read from the header
        {"audio_path": "wavs/broken.wav", "text": "a dog"},
        {"text": "no audio"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n")
    filters = ManifestFilter(max_duration_sec=8.0, score_field="cer", max_score=0.5)
    rows, report = read_manifest(manifest, tokenizer=tokenizer, filters=filters)

    assert [r.line for r in rows] == [1] and report.kept == 1 and report.total == 10
    assert dict(report.skipped) == {
        "invalid JSON": 1,
        "missing audio file": 1,
        "empty text": 1,
        "audio too short for its transcript": 1,
        "longer than max_duration_sec": 1,
        "cer above max_score": 1,
        "no numeric cer": 1,  # the header-duration row has no score, so the score filter drops it
        "unreadable audio": 1,
        "no audio_path": 1,
    }
    assert report.examples["missing audio file"] == [3]
    assert rows[0].audio_path == tmp_path / "wavs" / "ok.wav" and rows[0].extra == {"cer": 0.1}
    assert "kept 1 of 10" in str(report)

    # Without the score filter the row without duration is kept, its duration from the file header.
    rows, report = read_manifest(manifest, tokenizer=tokenizer, filters=ManifestFilter(max_duration_sec=8.0))
    assert [(r.line, r.duration_sec) for r in rows] == [(1, 2.0), (7, 2.0), (8, 1.5)]
    # Without a tokenizer the transcript-length checks cannot run: the short row is kept.
    rows, report = read_manifest(manifest, filters=ManifestFilter(max_duration_sec=8.0))
    assert [r.line for r in rows] == [1, 5, 7, 8]
    # An audio root other than the manifest's folder.
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "m.jsonl").write_text(json.dumps(lines[0]) + "\n")
    rows, _ = read_manifest(other / "m.jsonl", audio_root=tmp_path, tokenizer=tokenizer)
    assert len(rows) == 1


def test_ctc_fit_rule_counts_repeats():
    assert ctc_symbols_needed([1, 2, 3]) == 3
    assert ctc_symbols_needed([1, 1, 2, 2, 2]) == 8  # three blanks separate the repeats
    assert num_bpe_windows(num_encoder_frames(16000), 4) == 13  # 1 s = 50 frames = 13 windows of 80 ms


# -- collator ------------------------------------------------------------------------------------------------


def test_collator_labels_decode_back_to_the_text(tokenizer):
    fe = GraniteSpeechNarFeatureExtractor()
    collator = DataCollatorForGraniteSpeechNar(fe, tokenizer)
    texts = ["the red cat sees two small dogs", "a cat", "where is my yellow bird"]
    waves = [
        np.random.default_rng(i).standard_normal(n).astype(np.float32) * 0.1
        for i, n in enumerate([8000, 16000, 12345])
    ]
    batch = collator([{"audio": w, "text": t} for w, t in zip(waves, texts, strict=True)])

    decoded = [
        tokenizer.decode(batch["labels"][b, : int(n)].tolist(), skip_special_tokens=True)
        for b, n in enumerate(batch["label_lengths"])
    ]
    assert decoded == texts
    assert batch["labels"][1, int(batch["label_lengths"][1]) :].eq(-100).all()
    assert BLANK not in batch["labels"].tolist()
    assert batch["input_features_mask"].sum(1).tolist() == [num_encoder_frames(len(w)) for w in waves]
    # Precomputed features (the dataset's cached mode) give the same batch.
    feats = [
        {"input_features": fe(w)["input_features"][0], "text": t} for w, t in zip(waves, texts, strict=True)
    ]
    again = collator(feats)
    assert torch.equal(again["input_features_mask"], batch["input_features_mask"])
    torch.testing.assert_close(again["input_features"], batch["input_features"])


def test_collator_character_labels(tokenizer):
    collator = DataCollatorForGraniteSpeechNar(
        GraniteSpeechNarFeatureExtractor(), tokenizer, char_vocabulary=" abc"
    )
    batch = collator([{"audio": np.zeros(3200, np.float32), "text": t} for t in ["a cab", "b?"]])
    assert batch["char_labels"].tolist() == [[2, 1, 4, 2, 3], [3, -100, -100, -100, -100]]
    assert batch["char_label_lengths"].tolist() == [5, 1]  # "?" is not in the vocabulary


def test_character_ctc_term():
    model = tiny_model(encoder_ctc_loss_lambda=0.3)
    feats, mask = random_features([40, 27], seed=5)
    labels, lengths = torch.tensor([[3, 4, 5], [6, 7, -100]]), torch.tensor([3, 2])
    chars, char_lengths = torch.tensor([[1, 2, 3, 1], [4, 5, -100, -100]]), torch.tensor([4, 2])
    base = compute_nar_losses(model, feats, mask, labels, lengths)
    with_chars = compute_nar_losses(
        model,
        feats,
        mask,
        labels,
        lengths,
        char_labels=chars,
        char_label_lengths=char_lengths,
        char_ctc_loss_lambda=2.0,
    )
    # The character head's own CTC at the 20 ms frame rate, normalised by all frames; blank = 0.
    enc = model.model.encoder(feats, mask)
    log_probs = enc.char_logits.float().log_softmax(-1)
    manual = sum(
        torch.nn.functional.ctc_loss(
            log_probs[b, :n, None], chars[b : b + 1, :k], [n], [k], blank=0, reduction="sum"
        )
        for b, (n, k) in enumerate([(40, 4), (27, 2)])
    ) / (40 + 27)
    torch.testing.assert_close(with_chars.char_ctc_loss, manual)
    torch.testing.assert_close(with_chars.loss, base.loss + 2.0 * manual)
    with pytest.raises(ValueError, match="char_labels"):
        compute_nar_losses(model, feats, mask, labels, lengths, char_ctc_loss_lambda=1.0)


def test_dataset_loads_lazily_and_caches(tmp_path):
    _write_wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_path": "a.wav", "text": "a cat"}) + "\n")
    rows, _ = read_manifest(tmp_path / "m.jsonl")
    plain = SpeechDataset(rows)
    assert plain[0]["audio"].shape == (16000,) and plain.lengths == [50]
    cached = SpeechDataset(rows, GraniteSpeechNarFeatureExtractor(), cache_features=True)
    first = cached[0]["input_features"]
    (tmp_path / "a.wav").unlink()  # served from the cache from now on
    assert cached[0]["input_features"] is first and first.shape == (50, 160)


# -- presets -------------------------------------------------------------------------------------------------


def _trainable_parts(model):
    return {k: t for k, (t, _) in count_parameters(model).parts.items() if t}


@pytest.mark.parametrize("preset", ["full", "encoder", "projector", "editor"])
def test_presets_freeze_exactly_what_they_say(preset):
    model = tiny_model()
    totals = {k: n for k, (_, n) in count_parameters(model).parts.items()}
    _, summary = apply_preset(model, preset, verbose=False)
    expected = {
        "full": set(totals),
        "encoder": {"encoder", "out_bpe"},
        "projector": {"projector"},
        "editor": {"editor"},
    }[preset]
    assert _trainable_parts(model) == {k: totals[k] for k in expected}
    assert summary.trainable == sum(totals[k] for k in expected)
    assert summary.total == sum(totals.values())


def test_editor_last_n_trains_the_last_layers_and_final_norm():
    model = tiny_model()
    apply_preset(model, "editor_last_n", num_layers=1, verbose=False)
    names = trainable_parameter_names(model)
    assert names and all(
        n.startswith(("model.language_model.layers.1.", "model.language_model.norm.")) for n in names
    )
    assert "model.language_model.norm.weight" in names
    assert not model.model.language_model.embed_tokens.weight.requires_grad
    with pytest.raises(ValueError, match="num_layers"):
        apply_preset(tiny_model(), "editor_last_n", num_layers=3, verbose=False)


def test_lora_preset_adapts_only_the_named_linear_layers():
    pytest.importorskip("peft")
    model = tiny_model()
    targets = set(lora_linear_layers(model, ["encoder", "editor"]))
    assert any(".attn.to_q" in t for t in targets) and any(".self_attn.q_proj" in t for t in targets)
    assert not any("projector" in t for t in targets)
    wrapped, summary = apply_preset(
        model, "lora", lora_targets=["encoder", "editor"], lora_rank=2, verbose=False
    )
    names = trainable_parameter_names(wrapped)
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    adapted = {n.split(".lora_")[0] for n in names}
    assert adapted == targets
    assert summary.parts["projector"][0] == 0 and summary.parts["out_bpe"][0] == 0
    # Gradients reach the adapters through the wrapped model.
    feats, mask = random_features([30, 20], seed=1)
    losses = compute_nar_losses(
        wrapped,
        feats,
        mask,
        torch.tensor([[3, 4], [5, 6]]),
        torch.tensor([2, 2]),
        encoder_ctc_loss_lambda=1.0,
    )
    losses.loss.backward()
    assert all(p.grad is not None for p in wrapped.parameters() if p.requires_grad)


def test_frozen_batch_norm_keeps_its_statistics():
    model = tiny_model().train()
    apply_preset(model, "projector", verbose=False)
    bn = model.model.encoder.layers[0].conv.batch_norm
    before = bn.running_mean.clone()
    feats, mask = random_features([30, 20], seed=2)
    compute_nar_losses(
        model, feats, mask, torch.tensor([[3, 4], [5, 6]]), torch.tensor([2, 2])
    ).loss.backward()
    assert torch.equal(bn.running_mean, before)
    # With the encoder trainable, BatchNorm updates its statistics as usual.
    model = tiny_model().train()
    apply_preset(model, "full", verbose=False)
    bn = model.model.encoder.layers[0].conv.batch_norm
    before = bn.running_mean.clone()
    compute_nar_losses(model, feats, mask, torch.tensor([[3, 4], [5, 6]]), torch.tensor([2, 2]))
    assert not torch.equal(bn.running_mean, before)


# -- draft noise and losses ----------------------------------------------------------------------------------


def test_draft_noise_operations():
    tokens = torch.arange(1, 41)
    excluded = [0, PAD, BLANK]
    assert torch.equal(DraftNoise(vocab_size=VOCAB).corrupt(tokens), tokens)
    sub = DraftNoise(substitution_prob=1.0, vocab_size=VOCAB, excluded_ids=excluded).corrupt(tokens)
    assert sub.shape == tokens.shape and not set(sub.tolist()) & set(excluded)
    assert DraftNoise(deletion_prob=1.0, vocab_size=VOCAB).corrupt(tokens).numel() == 0
    ins = DraftNoise(insertion_prob=1.0, vocab_size=VOCAB, excluded_ids=excluded).corrupt(tokens)
    assert ins.numel() == 81 and torch.equal(ins[1::2], tokens)
    # Same seed, same noise; the reference replaces the draft with reference_prob=1.
    a = DraftNoise(0.2, 0.2, 0.2, vocab_size=VOCAB, seed=3)([tokens])
    b = DraftNoise(0.2, 0.2, 0.2, vocab_size=VOCAB, seed=3)([tokens])
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], tokens)
    labels = torch.tensor([[7, 8, 9, -100]])
    out = DraftNoise(reference_prob=1.0, vocab_size=VOCAB)([torch.tensor([1, 2])], labels, torch.tensor([3]))
    assert out[0].tolist() == [7, 8, 9]
    with pytest.raises(ValueError):
        DraftNoise(substitution_prob=0.7, deletion_prob=0.5)


def test_sampled_drafts_follow_the_encoder_posterior():
    # Windows: [a, a, _ | b or _ (50/50), _, c]; a and c are certain, b is a coin flip.
    logits = torch.full((6, 5), -30.0)
    logits[[0, 1], 2] = logits[2, 4] = logits[[4], 4] = logits[5, 1] = 0.0
    logits[3, 3] = logits[3, 4] = 0.0
    seen = set()
    noise = DraftNoise(sampling_temperature=1.0, seed=0)
    for _ in range(40):
        first, second = noise.sample_drafts(logits, [3, 3], blank=4)
        assert first.tolist() == [2]
        seen.add(tuple(second.tolist()))
    assert seen == {(1,), (3, 1)}
    # In training, sampled drafts replace the greedy ones before editing.
    model = tiny_model(encoder_ctc_loss_lambda=0.0).train()
    feats, mask = random_features([40, 27], seed=6)
    labels, lengths = torch.tensor([[3, 4, 5], [6, 7, -100]]), torch.tensor([3, 2])
    greedy = compute_nar_losses(model.eval(), feats, mask, labels, lengths)
    sampled = compute_nar_losses(
        model.eval(), feats, mask, labels, lengths, draft_noise=DraftNoise(sampling_temperature=3.0, seed=1)
    )
    assert sampled.encoder_ctc_loss is None and not torch.equal(sampled.ctc_loss, greedy.ctc_loss)


def test_losses_without_noise_equal_the_model_forward():
    model = tiny_model(ce_loss_lambda=0.5, encoder_ctc_loss_lambda=0.3)
    feats, mask = random_features([40, 27], seed=3)
    labels, lengths = torch.tensor([[3, 4, 5], [6, 7, -100]]), torch.tensor([3, 2])
    ref = model(feats, mask, labels=labels, label_lengths=lengths)
    ours = compute_nar_losses(model, feats, mask, labels, lengths)
    for name in ("loss", "ctc_loss", "ce_loss", "encoder_ctc_loss"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=0, atol=0)
    # Encoder-only training skips the editor.
    enc = compute_nar_losses(model, feats, mask, labels, lengths, edit_loss_weight=0.0)
    assert enc.ctc_loss is None and enc.ce_loss is None
    torch.testing.assert_close(enc.loss, 0.3 * ref.encoder_ctc_loss)


def test_overfitting_one_batch_learns_the_targets():
    # Standard parameterisation (the Granite multipliers are tuned for a 2048-wide editor, and slow a
    # 24-wide one down), no dropout: a few dozen steps fit two utterances.
    text = dict(
        embedding_multiplier=1.0, logits_scaling=1.0, residual_multiplier=1.0, attention_multiplier=6**-0.5
    )
    model = tiny_model(seed=0, encoder_ctc_loss_lambda=1.0, text=text).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    feats, mask = random_features([48, 36], seed=4)
    labels, lengths = torch.tensor([[3, 9, 4, 12], [21, 5, 8, -100]]), torch.tensor([4, 3])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    history = []
    for _ in range(150):
        losses = compute_nar_losses(model, feats, mask, labels, lengths)
        optimizer.zero_grad()
        losses.loss.backward()
        optimizer.step()
        history.append(losses.ctc_loss.item())
    assert history[-1] < 0.05 * history[0]
    out = model.eval().generate(feats, mask, num_editing_steps=2, return_dict_in_generate=True)
    assert [s.tolist() for s in out.draft_ids] == [[3, 9, 4, 12], [21, 5, 8]]
    assert [s.tolist() for s in out.sequences] == [[3, 9, 4, 12], [21, 5, 8]]


# -- trainer -------------------------------------------------------------------------------------------------


def test_trainer_logs_components_and_keeps_the_best_checkpoint(tmp_path, tokenizer):
    from transformers import TrainingArguments

    texts = ["a cat", "the dog", "a red bird", "my cat"]
    rng = np.random.default_rng(0)
    items = [{"audio": rng.standard_normal(16000).astype(np.float32) * 0.1, "text": t} for t in texts]
    collator = DataCollatorForGraniteSpeechNar(GraniteSpeechNarFeatureExtractor(), tokenizer)
    model = tiny_model(ce_loss_lambda=0.1, encoder_ctc_loss_lambda=0.5)
    records = []
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=4,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="best",
        save_total_limit=1,
        save_only_model=True,
        metric_for_best_model="edit1_cer",
        greater_is_better=False,
        remove_unused_columns=False,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
    )
    trainer = GraniteSpeechNarTrainer(
        model=model,
        args=args,
        train_dataset=items,
        eval_dataset=items[:2],
        data_collator=collator,
        draft_noise=DraftNoise(0.1, 0.1, 0.1, vocab_size=VOCAB, excluded_ids=[PAD, BLANK]),
        transcription_evaluator=TranscriptionEvaluator(items[:2], collator, tokenizer, num_editing_steps=2),
        log_fn=records.append,
    )
    trainer.train()
    train_logs = [r for r in records if "loss" in r]
    assert train_logs and all({"ctc_loss", "ce_loss", "encoder_ctc_loss"} <= set(r) for r in train_logs)
    r = train_logs[0]
    assert r["loss"] == pytest.approx(
        r["ctc_loss"] + 0.1 * r["ce_loss"] + 0.5 * r["encoder_ctc_loss"], rel=1e-4
    )
    evals = [r for r in records if "eval_edit1_cer" in r]
    assert len(evals) == 2 and all({"eval_draft_cer", "eval_edit2_wer", "eval_rtfx"} <= set(r) for r in evals)
    assert len(list(tmp_path.glob("checkpoint-*"))) == 1


def test_wall_clock_schedule():
    budget = WallClockBudget(100.0, warmup_steps=10, final_lr_ratio=0.1)
    assert budget.lr_lambda(0) == pytest.approx(0.1)  # warm-up, before the clock starts
    budget.start = __import__("time").monotonic() - 50.0  # half-way through the budget
    assert budget.lr_lambda(20) == pytest.approx(0.1 + 0.9 * 0.5, abs=0.02)
    budget.start -= 60.0
    assert budget.fraction() == 1.0 and budget.lr_lambda(1000) == pytest.approx(0.1)
    assert math.isclose(WallClockBudget(10.0).lr_lambda(0), 1.0)
