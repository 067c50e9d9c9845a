"""``granite_nar.testing.synthetic_speech``: the synthetic espeak-ng corpus (grammar, tokenizer, rendering and
manifests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from granite_nar.testing.synthetic_speech import (
    DEFAULT_VARIANTS,
    DEFAULT_VOICES,
    EOT_TOKEN,
    PAD_TOKEN,
    EspeakNotFoundError,
    RenderParams,
    add_noise,
    annotate_corpus,
    check_round_trip,
    find_espeak,
    generate_sentences,
    grammar_vocabulary,
    load_manifest,
    make_corpus,
    render_fields,
    synthesize,
    synthesize_sentences,
    train_tokenizer,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


# -- grammar ---------------------------------------------------------------------------------------------------


def test_grammar_is_deterministic_per_seed():
    assert generate_sentences(50, seed=1) == generate_sentences(50, seed=1)
    assert generate_sentences(50, seed=1) != generate_sentences(50, seed=2)


def test_grammar_variety_and_lexicon():
    vocab = set(grammar_vocabulary())
    assert 150 <= len(vocab) <= 250
    sentences = generate_sentences(1000, seed=0)
    assert len(set(sentences)) > 950
    used = set()
    for s in sentences:
        words = s.split()
        assert 3 <= len(words) <= 10
        assert s == " ".join(words) and s == s.lower()
        assert set(words) <= vocab, set(words) - vocab
        used.update(words)
        for a, b in zip(words, words[1:], strict=False):
            assert not (a == "a" and b[0] in "aeiou"), s  # article agreement
    assert len(used) > 0.8 * len(vocab)
    unique = generate_sentences(300, seed=3, unique=True, min_words=4, max_words=6)
    assert len(set(unique)) == 300
    assert all(4 <= len(s.split()) <= 6 for s in unique)


# -- tokenizer -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(generate_sentences(400, seed=0) + grammar_vocabulary(), out, vocab_size=320)
    return out


def test_tokenizer_special_ids_are_last(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    size = len(tok)
    assert size <= 320
    assert tok.convert_tokens_to_ids(PAD_TOKEN) == tok.pad_token_id == size - 2
    assert tok.convert_tokens_to_ids(EOT_TOKEN) == tok.eos_token_id == tok.bos_token_id == size - 1
    assert (Path(tokenizer_dir) / "spm.model").is_file()


def test_tokenizer_round_trip(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    held_out = generate_sentences(300, seed=123)
    assert check_round_trip(tok, held_out) == 300
    text = held_out[0]
    ids = tok(text)["input_ids"]
    assert tok.eos_token_id not in ids  # no special tokens are added on encode
    padded = ids + [tok.eos_token_id, tok.pad_token_id, tok.pad_token_id]
    assert tok.decode(padded, skip_special_tokens=True) == text
    with pytest.raises(ValueError, match="round trip failed"):
        check_round_trip(tok, ["The Cat 7"])


# -- rendering -------------------------------------------------------------------------------------------------


def test_add_noise_hits_requested_snr():
    rng = np.random.default_rng(0)
    speech = np.sin(np.linspace(0, 2000, 32000)).astype(np.float32)
    for kind in ("white", "pink"):
        noisy = add_noise(speech, 20.0, kind, np.random.default_rng(1))
        noise = noisy - speech
        snr = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
        assert abs(snr - 20.0) < 0.1, (kind, snr)
    with pytest.raises(ValueError):
        add_noise(speech, 20.0, "brown", rng)


def test_render_fields_describe_the_rendering():
    assert render_fields(RenderParams(voice="en-gb+f3", rate=159, noise="pink", snr_db=9.5)) == {
        "voice": "en-gb",
        "variant": "f3",
        "rate": 159,
        "rate_band": "slow",
        "noise": "pink",
        "snr_db": 9.5,
    }
    fields = render_fields(RenderParams(voice="en-us", rate=160))
    assert (fields["variant"], fields["rate_band"], fields["noise"], fields["snr_db"]) == (
        "",
        "medium",
        "clean",
        None,
    )
    assert render_fields(RenderParams(rate=179))["rate_band"] == "medium"
    assert render_fields(RenderParams(rate=180))["rate_band"] == "fast"


def test_missing_espeak_says_how_to_install():
    with pytest.raises(EspeakNotFoundError, match="apt-get install -y espeak-ng"):
        find_espeak("no-such-espeak-binary-xyz")


@needs_espeak
def test_synthesize_is_deterministic_and_normalised():
    params = RenderParams(voice="en-gb+f3", rate=170, pitch=60, noise="pink", snr_db=25.0, noise_seed=7)
    a = synthesize("the red cat sees two small dogs", params)
    b = synthesize("the red cat sees two small dogs", params)
    assert a.dtype == np.float32 and a.ndim == 1
    np.testing.assert_array_equal(a, b)
    assert abs(float(np.max(np.abs(a))) - params.peak) < 1e-5
    assert 1.0 < a.shape[0] / 16000 < 4.0
    lead = a[: int(0.1 * 16000) - 10]
    assert np.any(lead != 0)  # the noise covers the silence padding too
    clean = synthesize("the red cat sees two small dogs", RenderParams(voice="en-gb+f3", rate=170, pitch=60))
    assert not np.any(clean[:1000])


@needs_espeak
def test_tiny_corpus_manifests(tmp_path):
    import soundfile as sf

    info = make_corpus(
        tmp_path,
        num_train=1,
        num_dev=1,
        num_test=1,
        seed=5,
        noise_snr_db=20,
        noise_prob=1.0,
        jobs=1,
        log=None,
    )
    assert info["noisy_utterances"] == 3
    texts = []
    for split in ("train", "dev", "test"):
        lines = (tmp_path / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == 1
        for line in lines:
            row = json.loads(line)
            assert set(row) == {
                "audio_path",
                "text",
                "duration_sec",
                "voice",
                "variant",
                "rate",
                "rate_band",
                "noise",
                "snr_db",
            }
            assert row["noise"] in ("white", "pink") and 17 <= row["snr_db"] <= 23  # noise_prob 1, 20 +- 3 dB
            assert row["voice"] in DEFAULT_VOICES and row["variant"] in DEFAULT_VARIANTS
            assert row["text"].strip() and row["text"] == row["text"].strip()
            rel = Path(row["audio_path"])
            assert not rel.is_absolute() and ".." not in rel.parts
            wav = tmp_path / rel
            assert wav.is_file()
            meta = sf.info(str(wav))
            assert meta.samplerate == 16000 and meta.channels == 1
            assert abs(meta.frames / meta.samplerate - row["duration_sec"]) < 1e-9
            texts.append(row["text"])
        resolved = load_manifest(tmp_path / f"{split}.jsonl")
        assert Path(resolved[0]["audio_path"]).is_absolute() and Path(resolved[0]["audio_path"]).is_file()
    assert len(set(texts)) == 3
    saved = json.loads((tmp_path / "corpus_info.json").read_text())
    assert saved["vocab_size"] == info["vocab_size"] and saved["pad_token_id"] == info["vocab_size"] - 2
    assert saved["ctc_infeasible_utterances"] == 0
    # A corpus whose manifests predate the render fields gets exactly these back from its seed.
    written = {split: (tmp_path / f"{split}.jsonl").read_text() for split in ("train", "dev", "test")}
    for split in written:
        rows = [json.loads(line) for line in written[split].splitlines()]
        plain = [{k: row[k] for k in ("audio_path", "text", "duration_sec")} for row in rows]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in plain))
    assert annotate_corpus(tmp_path) == 3
    for split, text in written.items():
        assert [json.loads(x) for x in (tmp_path / f"{split}.jsonl").read_text().splitlines()] == [
            json.loads(x) for x in text.splitlines()
        ]

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer"))
    assert check_round_trip(tok, texts) == 3


@needs_espeak
def test_synthesize_sentences_joins_with_pauses_within_the_limits():
    params = RenderParams(voice="en-us", rate=180, lead_silence=0.1, trail_silence=0.1)
    texts = ["the red cat sees two small dogs", "where is my hat", "a dog runs", "the cow sleeps"]
    one = synthesize(texts[0], params)
    wave, used = synthesize_sentences(texts, [1.0, 0.0, 0.5], params, target_seconds=0.5)
    assert used == 2  # at least two sentences, even past the target
    assert abs(float(np.max(np.abs(wave))) - params.peak) < 1e-5
    gap = wave[one.shape[0] - 1600 : one.shape[0] - 1600 + 16000]  # after the first sentence, no trail
    assert gap.shape[0] == 16000 and not np.any(gap)
    wave_all, used_all = synthesize_sentences(texts, [1.0, 0.0, 0.5], params)
    assert used_all == 4 and wave_all.shape[0] > wave.shape[0]
    limited, n = synthesize_sentences(texts, [1.0, 0.0, 0.5], params, max_seconds=wave.shape[0] / 16000)
    assert n == 2 and limited.shape[0] == wave.shape[0]
    longer, n = synthesize_sentences(texts, [1.0, 0.0, 0.5], params, target_seconds=0.5, min_seconds=5.0)
    assert n > 2 and longer.shape[0] >= 5.0 * 16000


@needs_espeak
def test_multi_sentence_corpus_keeps_the_single_sentence_utterances(tmp_path):
    common = dict(num_train=4, num_dev=1, num_test=2, seed=7, jobs=1, log=None)
    single = make_corpus(tmp_path / "single", **common)
    multi = make_corpus(
        tmp_path / "multi", **common, multi_prob=0.5, max_seconds=12, num_test_long=2, long_min_seconds=6
    )
    assert single["counts"] == {"train": 4, "dev": 1, "test": 2}
    assert multi["counts"] == {"train": 4, "dev": 1, "test": 2, "test_long": 2}
    assert multi["ctc_infeasible_utterances"] == 0
    # The test split does not change, nor does a train utterance that stays one sentence.
    assert (tmp_path / "single/test.jsonl").read_text() == (tmp_path / "multi/test.jsonl").read_text()
    before = load_manifest(tmp_path / "single/train.jsonl", resolve=False)
    after = load_manifest(tmp_path / "multi/train.jsonl", resolve=False)
    grew = 0
    for a, b in zip(before, after, strict=True):
        if a == b:
            continue
        grew += 1
        assert b["text"].startswith(a["text"] + " ") and a["duration_sec"] < b["duration_sec"] <= 12
    assert grew == multi["splits"]["train"]["multi_sentence_utterances"] > 0
    long = load_manifest(tmp_path / "multi/test_long.jsonl")
    assert all(6 <= row["duration_sec"] <= 12 for row in long)
    sentences = generate_sentences(200, seed=7, unique=True)
    for row in long:  # whole sentences of the grammar, none of them in another split
        words = row["text"].split()
        assert len(words) >= 6 and not any(row["text"].startswith(s + " ") for s in sentences[:7])
