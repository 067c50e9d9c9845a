"""Synthetic English speech corpus rendered with espeak-ng.

There are no public weights small enough to fine-tune on a laptop CPU, so the training loop is proven on a tiny
model trained from scratch on speech synthesised here:

* :func:`generate_sentences` draws sentences from a small English grammar (about 200 word forms, with number
  agreement, tense, selectional restrictions, questions, commands and clock times), deterministic per seed;
* :func:`synthesize` renders one sentence with ``espeak-ng`` under :class:`RenderParams` (voice, rate, pitch,
  word gap, silence padding, optional white or pink noise at a given SNR) as 16 kHz mono float32, peak normalised;
* :func:`train_tokenizer` trains a sentencepiece BPE model on the text and exports it as a fast ``transformers``
  tokenizer whose last two ids are ``<|pad|>`` and ``<|end_of_text|>`` (the CTC blank), as in the released model;
* :func:`synthesize_sentences` renders several sentences in one voice joined by pauses, up to a duration;
* :func:`make_corpus` ties it together: wav files, ``train/dev/test.jsonl`` manifests (optionally with
  multi-sentence utterances of up to 30 s, and a ``test_long`` split of them), tokenizer and a summary.

Everything random is drawn from generators seeded by ``(seed, split, index)``, so a corpus does not depend on the
number of worker processes.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..audio.waveform import resample_waveform
from ..lengths import SAMPLING_RATE, num_bpe_windows, num_encoder_frames
from ..model.ctc import ctc_symbols_needed

SAMPLE_RATE = SAMPLING_RATE
POOLING_WINDOW = 4  # the tiny models' encoder_config.pooling_window, as in the released model
PAD_TOKEN = "<|pad|>"
EOT_TOKEN = "<|end_of_text|>"
UNK_TOKEN = "<unk>"
SPLITS = ("train", "dev", "test", "test_long")  # the index of a split seeds its generators

# --------------------------------------------------------------------------------------------------------------
# Grammar
# --------------------------------------------------------------------------------------------------------------

ANIMALS = [
    ("cat", "cats"),
    ("dog", "dogs"),
    ("bird", "birds"),
    ("horse", "horses"),
    ("cow", "cows"),
    ("mouse", "mice"),
    ("sheep", "sheep"),
    ("fox", "foxes"),
    ("duck", "ducks"),
    ("wolf", "wolves"),
]
PEOPLE = [
    ("man", "men"),
    ("woman", "women"),
    ("child", "children"),
    ("teacher", "teachers"),
    ("farmer", "farmers"),
    ("doctor", "doctors"),
]
THINGS = [
    ("ball", "balls"),
    ("box", "boxes"),
    ("book", "books"),
    ("cup", "cups"),
    ("hat", "hats"),
    ("apple", "apples"),
    ("key", "keys"),
    ("egg", "eggs"),
]
VEHICLES = [("train", "trains"), ("bus", "buses")]
NOUNS = {"animal": ANIMALS, "person": PEOPLE, "thing": THINGS}

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "brown", "orange"]
ADJECTIVES = ["big", "small", "little", "old", "young", "happy", "hungry", "angry"]
# Adjectives that make sense for things as well as for animals and people.
THING_ADJECTIVES = ["big", "small", "little", "old"]
NUMBERS = [
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "twenty",
]
HOURS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
MINUTES = ["ten", "fifteen", "twenty", "thirty", "forty five"]

# Transitive verbs: (base, third person singular, past, object kinds).
TRANSITIVE = [
    ("see", "sees", "saw", ("animal", "person", "thing")),
    ("like", "likes", "liked", ("animal", "person", "thing")),
    ("chase", "chases", "chased", ("animal", "person", "thing")),
    ("find", "finds", "found", ("animal", "person", "thing")),
    ("watch", "watches", "watched", ("animal", "person")),
    ("follow", "follows", "followed", ("animal", "person")),
    ("feed", "feeds", "fed", ("animal", "person")),
    ("want", "wants", "wanted", ("thing",)),
    ("carry", "carries", "carried", ("thing",)),
]
INTRANSITIVE = [
    ("sleep", "sleeps", "slept"),
    ("run", "runs", "ran"),
    ("jump", "jumps", "jumped"),
    ("sing", "sings", "sang"),
    ("swim", "swims", "swam"),
    ("play", "plays", "played"),
]
CLOCK_VERBS = [("leave", "leaves", "left"), ("arrive", "arrives", "arrived")]
MANNER = ["quickly", "slowly", "again"]
FREQUENCY = ["often", "always", "never"]
DAYS = ["monday", "friday", "saturday", "sunday"]

# Places and the prepositions that go with them.
PLACES = {
    "garden": ("in", "near", "behind"),
    "house": ("in", "near", "behind"),
    "park": ("in", "near"),
    "hill": ("on", "near", "behind"),
    "forest": ("in", "near"),
    "kitchen": ("in",),
    "school": ("at", "near", "behind"),
    "farm": ("on", "at", "near"),
    "lake": ("by", "near", "in"),
    "table": ("on", "under", "near"),
    "tree": ("in", "under", "behind"),
}
# Places a thing can be put (imperative "put ... on the table").
PUT_PLACES = {"table": ("on", "under"), "box": ("in",), "kitchen": ("in",), "house": ("in",)}

SUBJECT_PRONOUNS = [("he", False), ("she", False), ("they", True), ("we", True)]
OBJECT_PRONOUNS = ["him", "her", "them", "us", "me", "it"]
SINGULAR_DETERMINERS = ["the", "a", "my", "your", "our", "this", "that"]
PLURAL_DETERMINERS = ["the", "my", "your", "our", "these", "those", "some"]

TIME_PRESENT = ["today", "now", "every morning", "every day", "at night", "in the evening"]
TIME_PAST = ["yesterday", "last night", "last week", "this morning"]
TIME_FUTURE = ["tomorrow", "next week", "tonight", "in the morning"]

# Closed-class words the templates below spell out literally.
_FUNCTION_WORDS = (
    "a an and are at do does did is was were will there where what who how many very please put give me bring "
    "to not half past quarter on"
).split()

VOWELS = set("aeiou")


def _agree_article(words: list[str]) -> list[str]:
    """``a`` becomes ``an`` before a word starting with a vowel letter (true for every word of this lexicon)."""
    out = list(words)
    for i in range(len(out) - 1):
        if out[i] == "a" and out[i + 1][0] in VOWELS:
            out[i] = "an"
    return out


class _Grammar:
    """Sentence templates over the lexicon above. One instance per ``random.Random``."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    # -- building blocks --------------------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq):
        return self.rng.choice(seq)

    def noun_phrase(
        self,
        kinds: Sequence[str],
        plural: bool | None = None,
        *,
        max_modifiers: int = 2,
        allow_number: bool = True,
    ) -> tuple[list[str], bool]:
        """Determiner, optional number, adjective and colour, noun; returns ``(words, is_plural)``."""
        kind = self.pick(list(kinds))
        singular_form, plural_form = self.pick(NOUNS[kind])
        if plural is None:
            plural = self.chance(0.45)
        words: list[str] = []
        if plural:
            if allow_number and self.chance(0.45):
                if self.chance(0.2):
                    words.append(self.pick(["the", "my", "your", "our", "these", "those"]))
                words.append(self.pick(NUMBERS))
            else:
                words.append(self.pick(PLURAL_DETERMINERS))
        else:
            words.append(
                self.pick(SINGULAR_DETERMINERS) if not (allow_number and self.chance(0.05)) else "one"
            )
        n_mod = 0
        adjectives = ADJECTIVES if kind != "thing" else THING_ADJECTIVES
        if n_mod < max_modifiers and self.chance(0.35):
            words.append(self.pick(adjectives))
            n_mod += 1
        if n_mod < max_modifiers and self.chance(0.4 if kind != "person" else 0.1):
            words.append(self.pick(COLOURS))
            n_mod += 1
        words.append(plural_form if plural else singular_form)
        return words, plural

    def subject(self, kinds=("animal", "person")) -> tuple[list[str], bool]:
        r = self.rng.random()
        if r < 0.15:
            pronoun, plural = self.pick(SUBJECT_PRONOUNS)
            return [pronoun], plural
        if r < 0.25:
            a, _ = self.noun_phrase(kinds, max_modifiers=1, allow_number=False)
            b, _ = self.noun_phrase(kinds, max_modifiers=1, allow_number=False)
            return [*a, "and", *b], True
        return self.noun_phrase(kinds)

    def place(self) -> list[str]:
        name = self.pick(sorted(PLACES))
        prep = self.pick(PLACES[name])
        words = [prep, "the"]
        if self.chance(0.2):
            words.append(self.pick(COLOURS + THING_ADJECTIVES))
        words.append(name)
        return words

    def verb(self, entry, tense: str, plural: bool) -> list[str]:
        base, third, past = entry[:3]
        if tense == "past":
            return past.split()
        if tense == "future":
            return ["will", *base.split()]
        return (base if plural else third).split()

    def tense(self) -> str:
        return self.rng.choices(["present", "past", "future"], weights=[0.5, 0.35, 0.15])[0]

    def time_phrase(self, tense: str) -> list[str]:
        if self.chance(0.3):
            return ["on", self.pick(DAYS)]
        table = {"present": TIME_PRESENT, "past": TIME_PAST, "future": TIME_FUTURE}[tense]
        return self.pick(table).split()

    def clock_time(self) -> list[str]:
        hour = self.pick(HOURS)
        r = self.rng.random()
        if r < 0.2:
            return ["at", hour]
        if r < 0.4:
            return ["at", "half", "past", hour]
        if r < 0.5:
            return ["at", "quarter", self.pick(["past", "to"]), hour]
        return ["at", hour, *self.pick(MINUTES).split()]

    # -- templates --------------------------------------------------------------------------------------------

    def transitive(self) -> list[str]:
        entry = self.pick(TRANSITIVE)
        tense = self.tense()
        subj, plural = self.subject()
        words: list[str] = []
        front_time = tense != "present" and self.chance(0.25)
        if front_time:
            words += self.time_phrase(tense)
        words += subj
        if tense == "present" and self.chance(0.2):
            words.append(self.pick(FREQUENCY))
        words += self.verb(entry, tense, plural)
        if self.chance(0.1):
            words.append(self.pick(OBJECT_PRONOUNS if "thing" not in entry[3] else ["it", "them"]))
        else:
            words += self.noun_phrase(entry[3])[0]
        if self.chance(0.35):
            words += self.place()
        if not front_time and (tense == "future" or self.chance(0.2)):
            words += self.time_phrase(tense)
        return words

    def intransitive(self) -> list[str]:
        entry = self.pick(INTRANSITIVE)
        tense = self.tense()
        subj, plural = self.subject()
        words = list(subj)
        if tense == "present" and self.chance(0.25):
            words.append(self.pick(FREQUENCY))
        words += self.verb(entry, tense, plural)
        if self.chance(0.3):
            words.append(self.pick(MANNER))
        if self.chance(0.6):
            words += self.place()
        if tense == "future" or self.chance(0.3):
            words += self.time_phrase(tense)
        return words

    def existential(self) -> list[str]:
        past = self.chance(0.3)
        np_words, plural = self.noun_phrase(("animal", "person", "thing"))
        be = ("were" if plural else "was") if past else ("are" if plural else "is")
        return ["there", be, *np_words, *self.place()]

    def copula(self) -> list[str]:
        kinds = self.pick([("animal",), ("person",), ("thing",)])
        np_words, plural = self.noun_phrase(kinds, max_modifiers=1)
        past = self.chance(0.3)
        be = ("were" if plural else "was") if past else ("are" if plural else "is")
        r = self.rng.random()
        if r < 0.4:
            pred = self.place()
        elif r < 0.7 or kinds == ("thing",):
            pred = [self.pick(COLOURS if kinds == ("thing",) else ADJECTIVES)]
            if self.chance(0.25):
                pred = ["very", *pred]
        else:
            pred = [self.pick(ADJECTIVES)]
            if self.chance(0.3):
                pred = ["very", *pred]
        return [*np_words, be, *pred]

    def question(self) -> list[str]:
        r = self.rng.random()
        if r < 0.3:  # yes/no question
            entry = self.pick(TRANSITIVE)
            subj, plural = self.subject()
            aux = "did" if self.chance(0.35) else ("do" if plural else "does")
            return [aux, *subj, entry[0], *self.noun_phrase(entry[3], max_modifiers=1)[0]]
        if r < 0.55:  # where
            np_words, plural = self.noun_phrase(("animal", "person", "thing"))
            past = self.chance(0.3)
            be = ("were" if plural else "was") if past else ("are" if plural else "is")
            return ["where", be, *np_words]
        if r < 0.7:  # how many
            singular_form, plural_form = self.pick(NOUNS[self.pick(["animal", "person", "thing"])])
            be = "were" if self.chance(0.3) else "are"
            return ["how", "many", plural_form, be, *self.place()]
        if r < 0.85:  # what
            entry = self.pick([e for e in TRANSITIVE if "thing" in e[3]])
            subj, plural = self.subject()
            aux = "did" if self.chance(0.4) else ("do" if plural else "does")
            return ["what", aux, *subj, entry[0]]
        entry = self.pick(TRANSITIVE)  # who
        verb = entry[2] if self.chance(0.5) else entry[1]
        return ["who", verb, *self.noun_phrase(entry[3])[0]]

    def command(self) -> list[str]:
        words = ["please"] if self.chance(0.35) else []
        r = self.rng.random()
        if r < 0.3:
            np_words, _ = self.noun_phrase(("thing",), max_modifiers=1)
            name = self.pick(sorted(PUT_PLACES))
            if name in np_words:
                name = "table"
            words += ["put", *np_words, self.pick(PUT_PLACES[name]), "the", name]
        elif r < 0.5:
            words += ["give", "me", *self.noun_phrase(("thing",))[0]]
        elif r < 0.7:
            words += ["bring", *self.noun_phrase(("thing", "animal"), max_modifiers=1)[0], "to", "the"]
            words.append(self.pick(sorted(PLACES)))
        elif r < 0.85:
            words += ["find", *self.noun_phrase(("animal", "person", "thing"))[0]]
        else:
            entry = self.pick(TRANSITIVE)
            words += ["do", "not", entry[0], *self.noun_phrase(entry[3], max_modifiers=1)[0]]
        return words

    def clock(self) -> list[str]:
        tense = self.rng.choices(["present", "past", "future"], weights=[0.5, 0.3, 0.2])[0]
        entry = self.pick(CLOCK_VERBS)
        if self.chance(0.5):
            singular_form, plural_form = self.pick(VEHICLES)
            plural = self.chance(0.2)
            subj = ["the", plural_form if plural else singular_form]
        else:
            subj, plural = self.subject(("person",))
        words = [*subj, *self.verb(entry, tense, plural), *self.clock_time()]
        if self.chance(0.25):
            words += ["on", self.pick(DAYS)]
        return words

    TEMPLATES = (
        ("transitive", 0.3),
        ("intransitive", 0.17),
        ("existential", 0.1),
        ("copula", 0.1),
        ("question", 0.14),
        ("command", 0.1),
        ("clock", 0.09),
    )

    def sentence(self) -> str:
        names, weights = zip(*self.TEMPLATES, strict=True)
        name = self.rng.choices(names, weights=weights)[0]
        return " ".join(_agree_article(getattr(self, name)()))


def grammar_vocabulary() -> list[str]:
    """Every word the grammar can emit, sorted."""
    words: set[str] = set(_FUNCTION_WORDS)
    for table in (ANIMALS, PEOPLE, THINGS, VEHICLES):
        for pair in table:
            words.update(pair)
    for entry in TRANSITIVE + INTRANSITIVE + CLOCK_VERBS:
        for form in entry[:3]:
            words.update(form.split())
    for table in (COLOURS, ADJECTIVES, NUMBERS, HOURS, MANNER, FREQUENCY, DAYS, OBJECT_PRONOUNS):
        for item in table:
            words.update(item.split())
    for table in (SINGULAR_DETERMINERS, PLURAL_DETERMINERS, TIME_PRESENT, TIME_PAST, TIME_FUTURE, MINUTES):
        for item in table:
            words.update(item.split())
    for name, preps in list(PLACES.items()) + list(PUT_PLACES.items()):
        words.add(name)
        words.update(preps)
    words.update(p for p, _ in SUBJECT_PRONOUNS)
    words.add("one")
    return sorted(words)


def generate_sentences(
    num: int, seed: int = 0, *, min_words: int = 3, max_words: int = 10, unique: bool = False
) -> list[str]:
    """``num`` sentences from the grammar: lowercase words separated by single spaces, no punctuation.

    Deterministic given ``seed``. Sentences outside ``[min_words, max_words]`` are redrawn; with ``unique``
    every returned sentence is distinct.
    """
    if min_words > max_words:
        raise ValueError(f"min_words={min_words} > max_words={max_words}")
    grammar = _Grammar(random.Random(seed))
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < num:
        attempts += 1
        if attempts > 100 * num + 1000:
            raise RuntimeError(
                f"could not draw {num} sentences with {min_words}-{max_words} words (unique={unique})"
            )
        text = grammar.sentence()
        n = text.count(" ") + 1
        if not min_words <= n <= max_words:
            continue
        if unique:
            if text in seen:
                continue
            seen.add(text)
        out.append(text)
    return out


# --------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------

DEFAULT_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
DEFAULT_VARIANTS = (
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
)

INSTALL_HINT = (
    "espeak-ng was not found on PATH; it renders the synthetic corpus. Install it with\n"
    "  sudo apt-get update && sudo apt-get install -y espeak-ng   (Debian/Ubuntu)\n"
    "  brew install espeak-ng                                     (macOS)\n"
    "or point the ESPEAK_NG environment variable at the binary."
)


class EspeakNotFoundError(RuntimeError):
    """``espeak-ng`` is not installed; the message says how to install it."""


def find_espeak(binary: str | None = None) -> str:
    """Path of the ``espeak-ng`` binary (argument, then ``$ESPEAK_NG``, then ``PATH``), or :class:`EspeakNotFoundError`."""
    candidate = binary or os.environ.get("ESPEAK_NG") or "espeak-ng"
    path = shutil.which(candidate)
    if path is None:
        raise EspeakNotFoundError(INSTALL_HINT)
    return path


@dataclass(frozen=True)
class RenderParams:
    """How one utterance is rendered. ``voice`` is an espeak-ng voice with optional ``+variant``."""

    voice: str = "en-us"
    rate: int = 160  # words per minute (espeak-ng -s)
    pitch: int = 50  # 0-99 (espeak-ng -p)
    word_gap: int = 0  # extra pause between words, in 10 ms units (espeak-ng -g)
    lead_silence: float = 0.1  # seconds of silence before the speech
    trail_silence: float = 0.1  # seconds of silence after the speech
    noise: str | None = None  # None, "white" or "pink"
    snr_db: float | None = None  # speech-to-noise ratio over the speech part
    noise_seed: int = 0
    peak: float = 0.9  # output peak amplitude


def draw_render_params(
    rng: np.random.Generator,
    *,
    voices: Sequence[str] = DEFAULT_VOICES,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    rate_range: tuple[int, int] = (145, 195),
    pitch_range: tuple[int, int] = (25, 75),
    noise_snr_db: float | None = None,
    noise_prob: float = 0.5,
) -> RenderParams:
    """Random :class:`RenderParams`: voice and variant, rate, pitch, word gap and padding; noise with
    probability ``noise_prob`` when ``noise_snr_db`` is given (white or pink, SNR jittered by +-3 dB)."""
    voice = str(rng.choice(list(voices)))
    variant = str(rng.choice(list(variants)))
    noise = None
    snr = None
    if noise_snr_db is not None and rng.random() < noise_prob:
        noise = "pink" if rng.random() < 0.5 else "white"
        snr = round(float(noise_snr_db + rng.uniform(-3.0, 3.0)), 2)
    return RenderParams(
        voice=f"{voice}+{variant}" if variant else voice,
        rate=int(rng.integers(rate_range[0], rate_range[1] + 1)),
        pitch=int(rng.integers(pitch_range[0], pitch_range[1] + 1)),
        word_gap=int(rng.choice([0, 0, 0, 1, 2])),
        lead_silence=round(float(rng.uniform(0.05, 0.25)), 3),
        trail_silence=round(float(rng.uniform(0.05, 0.25)), 3),
        noise=noise,
        snr_db=snr,
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


RATE_BANDS = ((0, 159, "slow"), (160, 179, "medium"), (180, 10_000, "fast"))


def render_fields(params: RenderParams | dict) -> dict:
    """The manifest fields that describe how an utterance was rendered: ``voice`` (espeak-ng voice),
    ``variant`` (its ``+variant``, ``""`` for none), ``rate`` (words per minute) and ``rate_band`` (``slow`` below
    160, ``medium`` below 180, ``fast``), ``noise`` (``clean``, ``white`` or ``pink``) and ``snr_db``
    (``None`` when clean)."""
    p = params if isinstance(params, dict) else asdict(params)
    voice, _, variant = p["voice"].partition("+")
    band = next(name for low, high, name in RATE_BANDS if low <= p["rate"] <= high)
    return {
        "voice": voice,
        "variant": variant,
        "rate": p["rate"],
        "rate_band": band,
        "noise": p["noise"] or "clean",
        "snr_db": p["snr_db"],
    }


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM mono WAV bytes to float32. espeak-ng ``--stdout`` writes placeholder chunk sizes, so the
    ``data`` chunk is taken to run to the end of the stream."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not produce a WAV stream")
    pos = 12
    sample_rate = None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk_id == b"fmt ":
            fmt, channels, sample_rate, _, _, bits = struct.unpack("<HHIIHH", data[pos + 8 : pos + 24])
            if fmt != 1 or channels != 1 or bits != 16:
                raise RuntimeError(
                    f"unexpected espeak-ng WAV format: fmt={fmt} channels={channels} bits={bits}"
                )
        elif chunk_id == b"data":
            if sample_rate is None:
                raise RuntimeError("WAV data chunk before fmt chunk")
            payload = data[pos + 8 :]
            payload = payload[: len(payload) // 2 * 2]
            return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0, sample_rate
        pos += 8 + size + (size & 1)
    raise RuntimeError("espeak-ng WAV stream has no data chunk")


def _espeak_wave(text: str, params: RenderParams, espeak: str) -> tuple[np.ndarray, int]:
    cmd = [
        espeak,
        "-v",
        params.voice,
        "-s",
        str(params.rate),
        "-p",
        str(params.pitch),
        "-g",
        str(params.word_gap),
    ]
    cmd += ["--stdout"]
    proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"espeak-ng failed ({proc.returncode}) for {text!r}: {proc.stderr.decode(errors='replace')}"
        )
    return _parse_wav(proc.stdout)


def make_noise(num_samples: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS ``"white"`` or ``"pink"`` (1/f power) noise."""
    white = rng.standard_normal(num_samples)
    if kind == "white":
        noise = white
    elif kind == "pink":
        spectrum = np.fft.rfft(white)
        freqs = np.arange(spectrum.shape[0], dtype=np.float64)
        freqs[0] = 1.0
        noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=num_samples)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected 'white' or 'pink'")
    rms = float(np.sqrt(np.mean(noise**2)))
    return (noise / max(rms, 1e-12)).astype(np.float32)


def add_noise(
    speech: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator, *, reference=None
) -> np.ndarray:
    """``speech`` plus ``kind`` noise scaled to ``snr_db`` relative to the RMS of ``reference`` (default: speech)."""
    ref = speech if reference is None else reference
    ref_rms = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64)))) if ref.size else 0.0
    noise = make_noise(speech.shape[0], kind, rng) * (ref_rms / 10.0 ** (snr_db / 20.0))
    return (speech + noise).astype(np.float32)


def _trim(wave: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak == 0.0:
        return wave
    active = np.nonzero(np.abs(wave) > threshold * peak)[0]
    return wave[active[0] : active[-1] + 1]


def _speech(text: str, params: RenderParams, espeak: str) -> np.ndarray:
    """espeak-ng's rendering of ``text``: silence trimmed, resampled to 16 kHz, not normalised."""
    wave, sr = _espeak_wave(text, params, espeak)
    wave = _trim(wave)
    if wave.size == 0 or not np.any(wave):
        raise RuntimeError(f"espeak-ng produced silence for {text!r} with {params}")
    return resample_waveform(wave, sr, SAMPLE_RATE)


def _finish(wave: np.ndarray, params: RenderParams, reference: np.ndarray) -> np.ndarray:
    """Pad ``wave`` with the lead and trail silence, add the noise (SNR against ``reference``), normalise."""
    lead = np.zeros(int(round(params.lead_silence * SAMPLE_RATE)), np.float32)
    trail = np.zeros(int(round(params.trail_silence * SAMPLE_RATE)), np.float32)
    wave = np.concatenate([lead, wave, trail])
    if params.noise is not None:
        if params.snr_db is None:
            raise ValueError("RenderParams.noise is set but snr_db is None")
        wave = add_noise(
            wave, params.snr_db, params.noise, np.random.default_rng(params.noise_seed), reference=reference
        )
    peak = float(np.max(np.abs(wave)))
    return (wave * (params.peak / peak)).astype(np.float32)


def synthesize(text: str, params: RenderParams | None = None, *, espeak: str | None = None) -> np.ndarray:
    """Render ``text`` with espeak-ng: 16 kHz mono float32, silence trimmed then padded per ``params``,
    optional noise, peak normalised to ``params.peak``."""
    params = params or RenderParams()
    speech = _speech(text, params, find_espeak(espeak))
    return _finish(speech, params, speech)


def synthesize_sentences(
    texts: Sequence[str],
    pauses: Sequence[float],
    params: RenderParams | None = None,
    *,
    target_seconds: float | None = None,
    min_seconds: float = 0.0,
    max_seconds: float | None = None,
    espeak: str | None = None,
) -> tuple[np.ndarray, int]:
    """Render several sentences in one voice (``params``), joined by silences, as one utterance.

    ``pauses[j]`` seconds of silence separate sentence ``j`` from sentence ``j + 1``; each sentence is trimmed
    as in :func:`synthesize`, and the padding, noise (SNR measured against the speech without pauses) and
    peak normalisation apply to the whole utterance. Sentences are taken in order while the utterance,
    padding included, stays within ``target_seconds`` (default: all of them), at least two of them, then
    more while it is shorter than ``min_seconds``; it never grows past ``max_seconds``. Returns the
    waveform and the number of sentences used: its transcript is ``" ".join(texts[:n])``.
    """
    params = params or RenderParams()
    if not texts:
        raise ValueError("synthesize_sentences needs at least one sentence")
    if len(pauses) < len(texts) - 1:
        raise ValueError(f"{len(texts)} sentences need {len(texts) - 1} pauses, got {len(pauses)}")
    espeak_path = find_espeak(espeak)
    target = float("inf") if target_seconds is None else target_seconds * SAMPLE_RATE
    limit = float("inf") if max_seconds is None else max_seconds * SAMPLE_RATE
    floor = min_seconds * SAMPLE_RATE
    padding = int(round(params.lead_silence * SAMPLE_RATE)) + int(round(params.trail_silence * SAMPLE_RATE))
    parts = [_speech(texts[0], params, espeak_path)]
    speech_parts = list(parts)
    total = padding + parts[0].shape[0]
    for text, pause in zip(texts[1:], pauses, strict=False):
        gap = np.zeros(int(round(pause * SAMPLE_RATE)), np.float32)
        nxt = _speech(text, params, espeak_path)
        grown = total + gap.shape[0] + nxt.shape[0]
        if grown > limit or (len(speech_parts) >= 2 and grown > target and total >= floor):
            break
        parts += [gap, nxt]
        speech_parts.append(nxt)
        total = grown
    return _finish(np.concatenate(parts), params, np.concatenate(speech_parts)), len(speech_parts)


def write_wav(path: str | os.PathLike, wave: np.ndarray) -> float:
    """Write 16 kHz 16-bit PCM; returns the duration in seconds (``frames / 16000``)."""
    import soundfile as sf

    sf.write(str(path), np.clip(wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return wave.shape[0] / SAMPLE_RATE


def _render_job(job: tuple) -> tuple[float, int]:
    """Render one utterance and write it; returns its duration and number of sentences.

    ``job`` is ``(texts, path, params, espeak, plan)``: one sentence when ``plan`` is None, otherwise
    ``plan`` holds the keyword arguments of :func:`synthesize_sentences` (pauses and durations)."""
    texts, path, params, espeak, plan = job
    if plan is None:
        return write_wav(path, synthesize(texts[0], RenderParams(**params), espeak=espeak)), 1
    wave, used = synthesize_sentences(texts, params=RenderParams(**params), espeak=espeak, **plan)
    return write_wav(path, wave), used


# --------------------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------------------


def _bpe_merges(vocab: dict[str, int], pieces: Sequence[str]) -> list[tuple[str, str]]:
    """Merges reproducing a sentencepiece BPE model, ranked by the id of the piece they build."""
    merges = []
    for piece in pieces:
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                merges.append((vocab[piece], vocab[left], vocab[right], left, right))
    merges.sort()
    return [(left, right) for _, _, _, left, right in merges]


def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 320):
    """Train a sentencepiece BPE tokenizer on ``texts`` and save it as a fast ``transformers`` tokenizer.

    The vocabulary has ``vocab_size`` entries when the text supports that many pieces (fewer otherwise):
    ``<unk>`` at id 0, the BPE pieces, then ``<|pad|>`` (V-2) and ``<|end_of_text|>`` (V-1, also bos/eos and the
    CTC blank). ``out_dir`` receives ``tokenizer.json``/``tokenizer_config.json`` (loadable offline with
    ``AutoTokenizer.from_pretrained(out_dir)``) and the sentencepiece model as ``spm.model``. Returns the
    tokenizer.
    """
    import sentencepiece as spm
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    texts = [" ".join(t.split()) for t in texts]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    if vocab_size < 8:
        raise ValueError(f"vocab_size={vocab_size} is too small")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size - 2,
        hard_vocab_limit=False,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=True,
        split_by_whitespace=True,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_piece=UNK_TOKEN,
        num_threads=1,
        minloglevel=2,
    )
    (out / "spm.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if pieces[0] != UNK_TOKEN:
        raise RuntimeError(f"expected {UNK_TOKEN} at id 0, got {pieces[0]!r}")
    vocab = {piece: i for i, piece in enumerate(pieces)}
    merges = _bpe_merges(vocab, pieces[1:])
    vocab[PAD_TOKEN] = len(vocab)
    vocab[EOT_TOKEN] = len(vocab)

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK_TOKEN, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Strip(), normalizers.Replace(Regex(r"\s+"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (UNK_TOKEN, PAD_TOKEN, EOT_TOKEN)]
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT_TOKEN,
        eos_token=EOT_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=4096,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    size = len(tokenizer)
    if tokenizer.pad_token_id != size - 2 or tokenizer.eos_token_id != size - 1:
        raise RuntimeError(
            f"special ids misplaced: pad={tokenizer.pad_token_id} eos={tokenizer.eos_token_id} size={size}"
        )
    tokenizer.save_pretrained(str(out))
    return tokenizer


def check_round_trip(tokenizer, texts: Iterable[str]) -> int:
    """Assert ``decode(encode(t), skip_special_tokens=True) == t`` without ``<unk>`` for every text.

    Returns the number of texts checked; raises ``ValueError`` naming the first failures.
    """
    failures = []
    n = 0
    unk = tokenizer.unk_token_id
    for text in texts:
        n += 1
        ids = tokenizer(text)["input_ids"]
        back = tokenizer.decode(ids, skip_special_tokens=True)
        if back != text or (unk is not None and unk in ids):
            failures.append((text, back))
    if failures:
        shown = "; ".join(f"{a!r} -> {b!r}" for a, b in failures[:5])
        raise ValueError(f"tokenizer round trip failed for {len(failures)}/{n} texts: {shown}")
    return n


# --------------------------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------------------------


def load_manifest(path: str | os.PathLike, *, resolve: bool = True) -> list[dict]:
    """Read a JSONL manifest; with ``resolve`` the ``audio_path`` entries become absolute (they are stored
    relative to the manifest's folder)."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if resolve:
                    row["audio_path"] = str((path.parent / row["audio_path"]).resolve())
                rows.append(row)
    return rows


def _split_seed(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _multi_plan(
    rng: np.random.Generator,
    count: int,
    *,
    min_seconds: float,
    max_seconds: float,
    pause_range: tuple[float, float],
    continuous_prob: float,
) -> dict:
    """Pauses and durations of one multi-sentence utterance of at most ``count`` sentences: the target
    duration is uniform in ``[min_seconds, max_seconds]``; each pause is 0-50 ms with probability
    ``continuous_prob`` (continuous speech), otherwise uniform in ``pause_range``."""
    target = float(rng.uniform(min_seconds, max_seconds))
    pauses = []
    for _ in range(count - 1):
        if rng.random() < continuous_prob:
            pauses.append(round(float(rng.uniform(0.0, 0.05)), 3))
        else:
            pauses.append(round(float(rng.uniform(*pause_range)), 3))
    return {
        "pauses": pauses,
        "target_seconds": round(target, 3),
        "min_seconds": min_seconds,
        "max_seconds": max_seconds,
    }


def annotate_corpus(out_dir: str | os.PathLike) -> int:
    """Add the :func:`render_fields` of every utterance to the manifests of a corpus made by
    :func:`make_corpus` before manifests carried them. The rendering settings are drawn again from the seed
    and settings in ``corpus_info.json`` (they are deterministic), so nothing is rendered. Returns the
    number of rows annotated."""
    out = Path(out_dir)
    info = json.loads((out / "corpus_info.json").read_text())
    count = 0
    for split in info["counts"]:
        path = out / f"{split}.jsonl"
        rows = load_manifest(path, resolve=False)
        for i, row in enumerate(rows):
            params = draw_render_params(
                _split_seed(info["seed"], split, i),
                voices=info["voices"],
                variants=info["variants"],
                rate_range=tuple(info["rate_range"]),
                pitch_range=tuple(info["pitch_range"]),
                noise_snr_db=info["noise_snr_db"],
                noise_prob=info["noise_prob"],
            )
            row.update(render_fields(params))
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        count += len(rows)
    return count


def make_corpus(
    out_dir: str | os.PathLike,
    *,
    num_train: int = 2000,
    num_dev: int = 100,
    num_test: int = 100,
    seed: int = 0,
    noise_snr_db: float | None = None,
    noise_prob: float = 0.5,
    vocab_size: int = 320,
    jobs: int | None = None,
    voices: Sequence[str] = DEFAULT_VOICES,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    rate_range: tuple[int, int] = (145, 195),
    pitch_range: tuple[int, int] = (25, 75),
    min_words: int = 3,
    max_words: int = 10,
    multi_prob: float = 0.0,
    max_seconds: float = 30.0,
    pause_range: tuple[float, float] = (0.2, 1.5),
    continuous_prob: float = 0.2,
    num_test_long: int = 0,
    long_min_seconds: float = 10.0,
    espeak: str | None = None,
    tokenizer_dir: str = "tokenizer",
    log=print,
) -> dict:
    """Render a synthetic corpus into ``out_dir``.

    Layout: ``wavs/{split}/{split}_{i:06d}.wav``; ``{split}.jsonl`` manifests with one
    ``{"audio_path", "text", "duration_sec"}`` object per line (paths relative to ``out_dir``), plus how it
    was rendered (:func:`render_fields`: ``voice``, ``variant``, ``rate``, ``rate_band``, ``noise``,
    ``snr_db``), the fields evaluation reports can be sliced by;
    ``tokenizer/`` (see :func:`train_tokenizer`, trained on the training text plus the grammar's word list);
    ``corpus_info.json`` with the settings and statistics, which are also returned. Sentences are distinct
    across all splits. ``jobs`` worker processes render (default: all CPUs).

    Multi-sentence utterances: a fraction ``multi_prob`` of the train and dev utterances join 2 or more
    sentences in one voice with pauses (see :func:`synthesize_sentences`), up to a target duration drawn
    uniformly up to ``max_seconds``; the transcript is the sentences joined by single spaces.
    ``num_test_long`` adds a ``test_long`` split of such utterances lasting ``long_min_seconds`` to
    ``max_seconds``. The test split is always single sentences. Each utterance keeps the sentence it has
    without multi-sentence utterances (the extra sentences are drawn after all of those), so with the
    defaults (``multi_prob=0``, ``num_test_long=0``) the corpus is the single-sentence one, and the
    single-sentence utterances and the test split are the same for any ``multi_prob``.
    """
    if not 0.0 <= multi_prob <= 1.0:
        raise ValueError(f"multi_prob={multi_prob} is not in [0, 1]")
    if not 0.0 <= pause_range[0] <= pause_range[1]:
        raise ValueError(f"pause_range={pause_range} is not an interval of non-negative seconds")
    if (multi_prob > 0 or num_test_long > 0) and not 0.0 <= long_min_seconds < max_seconds:
        raise ValueError(f"long_min_seconds={long_min_seconds} must be below max_seconds={max_seconds}")
    espeak_path = find_espeak(espeak)
    log = log or (lambda *a, **k: None)
    out = Path(out_dir)
    counts = {"train": num_train, "dev": num_dev, "test": num_test}
    if num_test_long:
        counts["test_long"] = num_test_long
    splits = list(counts)
    # Candidate sentences per multi-sentence utterance: enough for max_seconds of the shortest sentences.
    per_multi = max(2, int(np.ceil(max_seconds)) + 1)
    multi_rngs: dict[str, list[np.random.Generator | None]] = {}
    for split in splits:
        multi_rngs[split] = []
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, SPLITS.index(split), i, 1])
            multi = split == "test_long" or (split in ("train", "dev") and rng.random() < multi_prob)
            multi_rngs[split].append(rng if multi else None)
    num_single = num_train + num_dev + num_test
    num_extra = sum(
        (per_multi if split == "test_long" else per_multi - 1)
        for split in splits
        for r in multi_rngs[split]
        if r
    )
    texts = generate_sentences(
        num_single + num_extra, seed, min_words=min_words, max_words=max_words, unique=True
    )
    split_texts: dict[str, list[str]] = {}
    start = 0
    for split in SPLITS[:3]:
        split_texts[split] = texts[start : start + counts[split]]
        start += counts[split]

    jobs_list = []
    rows: dict[str, list[dict]] = {}
    param_counts: dict[str, int] = {"noisy": 0}
    for split in splits:
        (out / "wavs" / split).mkdir(parents=True, exist_ok=True)
        rows[split] = []
        for i in range(counts[split]):
            params = draw_render_params(
                _split_seed(seed, split, i),
                voices=voices,
                variants=variants,
                rate_range=rate_range,
                pitch_range=pitch_range,
                noise_snr_db=noise_snr_db,
                noise_prob=noise_prob,
            )
            param_counts["noisy"] += params.noise is not None
            rel = f"wavs/{split}/{split}_{i:06d}.wav"
            rows[split].append({"audio_path": rel})
            rng = multi_rngs[split][i]
            if rng is None:
                utterance_texts, plan = [split_texts[split][i]], None
            else:
                first = [] if split == "test_long" else [split_texts[split][i]]
                extra = per_multi - len(first)
                utterance_texts = first + texts[start : start + extra]
                start += extra
                plan = _multi_plan(
                    rng,
                    per_multi,
                    min_seconds=long_min_seconds if split == "test_long" else 0.0,
                    max_seconds=max_seconds,
                    pause_range=pause_range,
                    continuous_prob=continuous_prob,
                )
            jobs_list.append((utterance_texts, str(out / rel), asdict(params), espeak_path, plan))

    jobs = jobs or os.cpu_count() or 1
    t0 = time.perf_counter()
    if jobs == 1:
        results = [_render_job(j) for j in jobs_list]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_render_job, jobs_list, chunksize=16))
    render_seconds = time.perf_counter() - t0
    log(f"rendered {len(jobs_list)} utterances in {render_seconds:.1f} s with {jobs} worker(s)")

    k = 0
    for split in splits:
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows[split]:
                duration, used = results[k]
                row["text"] = " ".join(jobs_list[k][0][:used])
                row["duration_sec"] = duration
                row["_sentences"] = used
                record = {key: row[key] for key in ("audio_path", "text", "duration_sec")}
                record.update(render_fields(jobs_list[k][2]))
                k += 1
                f.write(json.dumps(record) + "\n")

    t1 = time.perf_counter()
    train_texts = [r["text"] for r in rows["train"]]
    tokenizer = train_tokenizer(train_texts + grammar_vocabulary(), out / tokenizer_dir, vocab_size)
    checked = check_round_trip(tokenizer, [r["text"] for split in splits for r in rows[split]])
    tokenizer_seconds = time.perf_counter() - t1
    log(f"tokenizer: {len(tokenizer)} ids, round trip checked on {checked} utterances")

    stats: dict[str, dict] = {}
    ctc_infeasible = 0
    max_tokens_per_sec = 0.0
    for split in splits:
        durs = [r["duration_sec"] for r in rows[split]]
        ntok = []
        for r in rows[split]:
            ids = tokenizer(r["text"], add_special_tokens=False)["input_ids"]
            ntok.append(len(ids))
            windows = num_bpe_windows(
                num_encoder_frames(round(r["duration_sec"] * SAMPLE_RATE)), POOLING_WINDOW
            )
            ctc_infeasible += windows < ctc_symbols_needed(ids)
            max_tokens_per_sec = max(max_tokens_per_sec, len(ids) / r["duration_sec"])
        multi = [r for r in rows[split] if r["_sentences"] > 1]
        stats[split] = {
            "utterances": len(durs),
            "hours": sum(durs) / 3600.0,
            "mean_duration_sec": float(np.mean(durs)) if durs else 0.0,
            "min_duration_sec": float(np.min(durs)) if durs else 0.0,
            "max_duration_sec": float(np.max(durs)) if durs else 0.0,
            "mean_words": float(np.mean([len(r["text"].split()) for r in rows[split]])) if durs else 0.0,
            "mean_tokens": float(np.mean(ntok)) if ntok else 0.0,
            "max_tokens": int(max(ntok)) if ntok else 0,
            "multi_sentence_utterances": len(multi),
            "multi_sentence_hours": sum(r["duration_sec"] for r in multi) / 3600.0,
            "mean_sentences_per_multi": float(np.mean([r["_sentences"] for r in multi])) if multi else 0.0,
        }
    all_durs = [r["duration_sec"] for split in splits for r in rows[split]]
    used_words = sorted({w for split in splits for r in rows[split] for w in r["text"].split()})
    info = {
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "counts": counts,
        "noise_snr_db": noise_snr_db,
        "noise_prob": noise_prob if noise_snr_db is not None else 0.0,
        "noisy_utterances": param_counts["noisy"],
        "voices": list(voices),
        "variants": list(variants),
        "rate_range": list(rate_range),
        "pitch_range": list(pitch_range),
        "min_words": min_words,
        "max_words": max_words,
        "multi_prob": multi_prob,
        "max_seconds": max_seconds,
        "pause_range": list(pause_range),
        "continuous_prob": continuous_prob,
        "long_min_seconds": long_min_seconds,
        "tokenizer_dir": tokenizer_dir,
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "grammar_words": len(grammar_vocabulary()),
        "words_used": len(used_words),
        "total_hours": sum(all_durs) / 3600.0,
        "mean_duration_sec": float(np.mean(all_durs)) if all_durs else 0.0,
        "max_tokens_per_sec": max_tokens_per_sec,
        "ctc_infeasible_utterances": int(ctc_infeasible),
        "splits": stats,
        "render_seconds": render_seconds,
        "tokenizer_seconds": tokenizer_seconds,
        "jobs": jobs,
        "espeak_version": _espeak_version(espeak_path),
    }
    (out / "corpus_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _espeak_version(espeak: str) -> str:
    try:
        proc = subprocess.run([espeak, "--version"], capture_output=True, check=False, timeout=10)
        return proc.stdout.decode(errors="replace").strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


__all__ = [
    "DEFAULT_VARIANTS",
    "DEFAULT_VOICES",
    "EOT_TOKEN",
    "PAD_TOKEN",
    "SAMPLE_RATE",
    "EspeakNotFoundError",
    "RenderParams",
    "add_noise",
    "check_round_trip",
    "draw_render_params",
    "find_espeak",
    "generate_sentences",
    "grammar_vocabulary",
    "load_manifest",
    "make_corpus",
    "make_noise",
    "synthesize",
    "synthesize_sentences",
    "train_tokenizer",
    "write_wav",
]
