"""``granite_nar.training.normalizers``: each step on hand-computed text, their composition, the spelling
mapping file, and CJK character-level scoring."""

from __future__ import annotations

import json
import random

import pytest

from granite_nar.training import EditCounts
from granite_nar.training.metrics import basic_normalize
from granite_nar.training.normalizers import (
    NORMALIZER_NAMES,
    TextNormalizer,
    TranscriptScorer,
    UtteranceErrors,
    build_normalizer,
    load_spelling_mapping,
)


def test_english_normaliser_by_hand():
    english = TextNormalizer("english")
    # lowercase; "mr" → "mister"; "'s" → " is"; "n't" → " not"; "." "," "?" removed; digits stay digits.
    assert english("Mr. Smith's 2 cats, don't they?") == "mister smith is 2 cats do not they"
    # Number words become digits, and "dollars" after a number becomes a leading "$".
    assert english("I owe you twenty five dollars.") == "i owe you $25"
    assert english("one hundred and two") == "102"
    assert english("We won't go, it's late") == "we will not go it is late"
    # Fillers and text in brackets or parentheses are dropped; diacritics removed.
    assert english("The colour of hmm the sky [noise] (laughs)") == "the colour of the sky"
    assert english("Café naïve") == "cafe naive"


def test_spelling_mapping_from_a_json_file(tmp_path):
    path = tmp_path / "english.json"
    path.write_text(json.dumps({"colour": "color", "analyse": "analyze"}))
    assert load_spelling_mapping(path) == {"colour": "color", "analyse": "analyze"}
    english = build_normalizer("english", path)
    assert english("The colour, we analyse it.") == "the color we analyze it"
    assert build_normalizer("english", {"colour": "color"})("COLOUR") == "color"
    assert TextNormalizer("english")("colour") == "colour"  # no mapping unless one is given


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not a JSON file"),
        ('["colour", "color"]', "expected one JSON object of words to words"),
        ('{"colour": 1}', "expected one JSON object of words to words"),
    ],
)
def test_bad_spelling_mapping_files_are_named(tmp_path, content, message):
    path = tmp_path / "mapping.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as caught:
        load_spelling_mapping(path)
    assert str(path) in str(caught.value)
    with pytest.raises(ValueError, match="cannot be read"):
        load_spelling_mapping(tmp_path / "nowhere.json")


def test_nfkc_case_and_punctuation_steps_by_hand():
    assert TextNormalizer("nfkc")("ＡＢＣ１２３") == "ABC123"  # full-width letters and digits
    assert TextNormalizer("nfkc")("ﬁne ﬂow") == "fine flow"  # ligatures
    assert TextNormalizer("case")("Straße ÀB") == "strasse àb"  # case folding, not lower()
    assert TextNormalizer("punctuation")("Hello, world! It's «fine»…") == "Hello world It's fine"
    assert TextNormalizer("punctuation")("我爱北京、你好。") == "我爱北京 你好"  # CJK comma and full stop
    assert TextNormalizer("none")("  A,  b\t") == "A, b"  # whitespace is always collapsed


def test_steps_compose_in_a_fixed_order():
    shuffled = TextNormalizer(("punctuation", "case", "nfkc"))
    assert shuffled.steps == ("nfkc", "case", "punctuation") == TextNormalizer("basic").steps
    assert TextNormalizer("nfkc+case").name == "nfkc+case" and TextNormalizer("none").name == "none"
    # NFKC runs first, so the full-width comma it turns into "," is removed too.
    assert shuffled("ＡＢＣ，Ｄ") == "abc d"
    assert build_normalizer(["case", "nfkc"])("ＡＢＣ") == "abc"


def test_basic_equals_basic_normalize():
    rng = random.Random(0)
    alphabet = "aAbBßẞ çÇ'’,.!?-«»ＡＢ１ﬁ我、。 \t"
    basic = TextNormalizer("basic")
    for _ in range(500):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 20)))
        assert basic(text) == basic_normalize(text), text


@pytest.mark.parametrize(
    "steps,message",
    [
        (
            "englsh",
            "unknown normalisation step 'englsh'; choose from english, basic, nfkc, case, punctuation, none",
        ),
        (("nfkc", "foo", "bar"), "unknown normalisation steps 'foo', 'bar'"),
        (("none", "case"), "'none' cannot be combined"),
    ],
)
def test_unknown_or_conflicting_steps_are_refused(steps, message):
    with pytest.raises(ValueError, match=message):
        TextNormalizer(steps)


def test_spelling_mapping_needs_the_english_step():
    with pytest.raises(ValueError, match="'english' normalisation step only"):
        TextNormalizer("basic", {"colour": "color"})


def test_names_cover_the_steps():
    assert set(NORMALIZER_NAMES) == {"english", "basic", "nfkc", "case", "punctuation", "none"}


def test_chinese_scored_per_character():
    cjk, plain = TranscriptScorer(cjk_chars=True), TranscriptScorer()
    # One character of four substituted: 1/4 either way for CER; WER is per character only with cjk_chars.
    assert cjk.char_error_rate("我爱北京", "我爱南京").rate == pytest.approx(1 / 4)
    assert cjk.word_error_rate("我爱北京", "我爱南京").rate == pytest.approx(1 / 4)
    assert plain.char_error_rate("我爱北京", "我爱南京").rate == pytest.approx(1 / 4)
    assert plain.word_error_rate("我爱北京", "我爱南京").rate == 1.0  # one "word", wrong
    # The CJK comma and full stop are punctuation; with cjk_chars the spaces they leave do not count.
    assert cjk.score("今日は、晴れです。", "今日は晴れです") == UtteranceErrors(
        EditCounts(0, 0, 0, 7), EditCounts(0, 0, 0, 7)
    )
    # Without it, "今日は 晴れです" is two words against one, and the space is a missing character.
    errors = plain.score("今日は、晴れです。", "今日は晴れです")
    assert (errors.words, errors.chars) == (EditCounts(1, 1, 0, 2), EditCounts(0, 1, 0, 8))


def test_japanese_mixed_with_latin():
    cjk = TranscriptScorer(cjk_chars=True)
    reference, hypothesis = "東京でNLPを学ぶ。", "東京で NLP を学んだ"
    assert cjk.words(reference) == ["東", "京", "で", "nlp", "を", "学", "ぶ"]
    assert cjk.words(hypothesis) == ["東", "京", "で", "nlp", "を", "学", "ん", "だ"]
    # ぶ → ん and だ inserted: 2 errors over 7 words, and over 9 characters (spaces ignored).
    errors = cjk.score(reference, hypothesis)
    assert (errors.words, errors.chars) == (EditCounts(1, 0, 1, 7), EditCounts(1, 0, 1, 9))
    # Scored as whitespace words: one reference word against three; characters: two spaces inserted too.
    plain = TranscriptScorer().score(reference, hypothesis)
    assert (plain.words.errors, plain.words.reference_length) == (3, 1)
    assert (plain.chars.errors, plain.chars.reference_length) == (4, 9)


def test_a_custom_normaliser_is_any_callable():
    scorer = TranscriptScorer(str.upper)
    assert scorer.words(" a  b ") == ["A", "B"]
    assert scorer.describe() == {"normalizer": "upper", "cjk_chars": False}
    assert TranscriptScorer(TextNormalizer("english"), cjk_chars=True).describe() == {
        "normalizer": "english",
        "cjk_chars": True,
    }
