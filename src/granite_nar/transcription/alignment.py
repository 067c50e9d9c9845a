"""Word times for the edited transcript: CTC forced alignment against the encoder's BPE posteriors.

Edited tokens have no frame of their own: the editor reads slots, not time. The encoder's BPE CTC head,
though, scores every 80 ms window against every token, so the most likely CTC path that spells out
exactly the final tokens (a Viterbi search, below) places each token in time::

    BPE scores (W windows, blank + the n final tokens)
      └─ Viterbi over the 2n+1 CTC states [_, t1, _, t2, ..., tn, _] ──► a state per window
           └─ windows of token i ──► token i's first and last window
                └─ tokens grouped into words (a token that starts with a word-boundary marker opens a word)
                     └─ word start = first window of its first token, end = end of the last window of its
                        last token (in seconds, plus the segment's offset)

torchaudio's ``forced_align`` did this once; it is gone from torchaudio 2.9, and the package does not
depend on torchaudio. The search is O(W · n) in torch, one vectorised step per window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .results import Word

__all__ = ["forced_align", "token_spans", "group_words", "word_start_table"]

# The markers tokenizers put in front of a piece that starts a word: SentencePiece's "▁" and byte-level
# BPE's "Ġ" (a space byte); a plain leading space in some vocabularies.
_WORD_START_MARKERS = ("▁", "Ġ", " ")


def word_start_table(tokenizer, vocab_size: int) -> torch.Tensor:
    """``(vocab_size,)`` bool: True for tokens whose piece starts a new word.

    Ids the tokenizer does not know (the model's vocabulary can be larger) are False.
    """
    table = torch.zeros(vocab_size, dtype=torch.bool)
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    for index, piece in enumerate(pieces):
        if isinstance(piece, str) and piece.startswith(_WORD_START_MARKERS):
            table[index] = True
    return table


def forced_align(scores: torch.Tensor, targets: torch.Tensor, blank: int) -> torch.Tensor:
    """The best CTC path through ``scores`` that spells ``targets``.

    Args:
        scores: ``(W, C)`` per-window log-probabilities (or logits: a constant added to a whole window
            changes no path's rank, since every path visits every window once).
        targets: ``(n,)`` column indices of the tokens to spell, in order (no blanks).
        blank: the blank's column.

    Returns:
        ``(W,)`` long tensor: for each window, the index ``i`` of the target it emits, or -1 for a blank.

    Raises:
        ValueError: the windows are too few for the targets (``n`` plus one blank between equal
            neighbours).
    """
    num_windows = scores.shape[0]
    n = int(targets.numel())
    repeats = int((targets[1:] == targets[:-1]).sum()) if n > 1 else 0
    if num_windows < n + repeats:
        raise ValueError(f"{n} tokens cannot be aligned to {num_windows} windows")
    if n == 0:
        return torch.full((num_windows,), -1, dtype=torch.long)
    scores = scores.float()
    num_states = 2 * n + 1
    labels = torch.full((num_states,), blank, dtype=torch.long, device=scores.device)
    labels[1::2] = targets
    emissions = scores[:, labels]  # (W, S)
    # A state may be entered from two back (skipping a blank) when it is a token unlike the one before.
    can_skip = torch.zeros(num_states, dtype=torch.bool, device=scores.device)
    can_skip[3::2] = targets[1:] != targets[:-1]
    neg_inf = torch.tensor(float("-inf"), device=scores.device)

    score = torch.full((num_states,), float("-inf"), device=scores.device)
    score[:2] = emissions[0, :2]
    back = torch.zeros((num_windows, num_states), dtype=torch.long, device=scores.device)
    for t in range(1, num_windows):
        stay = score
        step = torch.cat([neg_inf[None], score[:-1]])
        skip = torch.where(can_skip, torch.cat([neg_inf.expand(2), score[:-2]]), neg_inf)
        best, move = torch.stack([stay, step, skip]).max(dim=0)
        score = best + emissions[t]
        back[t] = move
    state = num_states - 1 if score[-1] >= score[-2] else num_states - 2
    back = back.tolist()
    path = [0] * num_windows
    for t in range(num_windows - 1, -1, -1):
        path[t] = state
        state -= back[t][state]
    path = torch.tensor(path, dtype=torch.long)
    return torch.where(path % 2 == 1, path // 2, torch.full_like(path, -1))


def token_spans(path: torch.Tensor, num_tokens: int) -> list[tuple[int, int]]:
    """``(first_window, last_window + 1)`` of each token from a :func:`forced_align` path."""
    windows = torch.arange(path.numel())
    emitted = path >= 0
    first = torch.full((num_tokens,), path.numel(), dtype=torch.long)
    last = torch.full((num_tokens,), -1, dtype=torch.long)
    first.scatter_reduce_(0, path[emitted], windows[emitted], reduce="amin")
    last.scatter_reduce_(0, path[emitted], windows[emitted], reduce="amax")
    return [(int(a), int(b) + 1) for a, b in zip(first.tolist(), last.tolist(), strict=True)]


def group_words(
    token_ids: Sequence[int],
    spans: Sequence[tuple[int, int]],
    confidences: Sequence[float],
    starts_word: torch.Tensor,
    decode: Callable[[list[int]], str],
    window_seconds: float,
    offset_seconds: float,
    end_seconds: float | None = None,
) -> list[Word]:
    """Tokens with window spans and confidences → :class:`Word` objects.

    A token opens a new word when ``starts_word[token]`` is True (and the first token always does); a
    word's text is ``decode`` of its tokens, stripped. Words that decode to nothing (special tokens) are
    dropped. Times are ``offset_seconds + window * window_seconds``, capped at ``end_seconds``.
    """
    groups: list[list[int]] = []
    for position, token in enumerate(token_ids):
        if not groups or bool(starts_word[token]):
            groups.append([])
        groups[-1].append(position)
    words = []
    for group in groups:
        text = decode([token_ids[p] for p in group]).strip()
        if not text:
            continue
        start = offset_seconds + spans[group[0]][0] * window_seconds
        end = offset_seconds + spans[group[-1]][1] * window_seconds
        if end_seconds is not None:
            start, end = min(start, end_seconds), min(end, end_seconds)
        confidence = min(float(confidences[p]) for p in group)
        words.append(Word(text, round(start, 3), round(end, 3), round(confidence, 4)))
    return words


def speech_activity(
    wave: torch.Tensor, frame_samples: int, *, min_gap_frames: int = 5
) -> list[tuple[int, int]]:
    """Stretches of a waveform louder than its own background: ``[(first_frame, last_frame + 1), ...]``.

    Frame energies (dB, per ``frame_samples``) are compared with a threshold a quarter of the way from the
    recording's background level (10th percentile) to its loud level (99th percentile); active runs closer
    than ``min_gap_frames`` are merged (the closure of a stop consonant is not a pause).
    """
    usable = wave.shape[0] // frame_samples * frame_samples
    if usable == 0:
        return []
    frames = wave[:usable].float().reshape(-1, frame_samples)
    energy = 10.0 * torch.log10(frames.pow(2).mean(dim=1) + 1e-10)  # (F,)
    floor, loud = torch.quantile(energy, 0.1), torch.quantile(energy, 0.99)
    if loud - floor < 6.0:  # no contrast: nothing to tell speech from background
        return []
    active = (energy > floor + 0.25 * (loud - floor)).to(torch.int8)
    edges = torch.diff(torch.cat([active.new_zeros(1), active, active.new_zeros(1)]))
    starts = (edges == 1).nonzero().flatten().tolist()
    ends = (edges == -1).nonzero().flatten().tolist()
    regions: list[tuple[int, int]] = []
    for start, end in zip(starts, ends, strict=True):
        if regions and start - regions[-1][1] < min_gap_frames:
            regions[-1] = (regions[-1][0], end)
        else:
            regions.append((start, end))
    return regions


# Delays tried between a word's CTC spike and the start of its sound (seconds; negative: the spike comes late).
SPIKE_DELAYS = tuple(round(-0.4 + 0.05 * k, 2) for k in range(13))


def refine_word_times(
    words: list[Word],
    regions: Sequence[tuple[float, float]],
    *,
    drop_cost: float = 0.5,
    missing_cost: float = 0.3,
    delays: Sequence[float] = SPIKE_DELAYS,
) -> list[Word]:
    """Move word boundaries onto the sound.

    CTC spikes say *which* part of the audio a word belongs to but not exactly where it starts: the BPE
    head sees a whole attention block at once, and a model tends to fire a little after (or before) the
    sound. So each word is anchored at its aligned start plus a delay, and the stretches of sound
    (:func:`speech_activity`) are matched to the words in order by a small dynamic programme: a stretch
    matched to a word costs its distance from the word's anchor, a stretch matched to no word (a noise)
    costs ``drop_cost`` seconds, and a word left without a stretch costs ``missing_cost``. A stretch
    holding several words' anchors (speech without gaps) is first split between them at the midpoints of
    the anchors. The delay is the one of ``delays`` whose matching costs least, found for each segment
    from its own audio (no model-specific constant). A word then spans its stretches; a word without any
    keeps its aligned times, kept between its neighbours.
    """
    if not words or not regions:
        return words
    best_cost, assigned = float("inf"), None
    for delay in delays:
        cost, matched = _match([w.start + delay for w in words], regions, drop_cost, missing_cost)
        if matched is not None and cost < best_cost - 1e-9:
            best_cost, assigned = cost, matched
    if assigned is None:
        return words  # every stretch dropped
    out, previous_end = [], 0.0
    for index, (word_, stretches) in enumerate(zip(words, assigned, strict=True)):
        start, end = word_.start, word_.end
        if stretches:
            start, end = min(s for s, _ in stretches), max(e for _, e in stretches)
        following = next((min(s for s, _ in later) for later in assigned[index + 1 :] if later), None)
        start = max(start, previous_end)
        if following is not None:
            start, end = min(start, following), min(end, following)
        end = max(end, start)
        out.append(Word(word_.word, round(start, 3), round(end, 3), word_.confidence))
        previous_end = end
    return out


def _match(
    anchors: list[float], regions: Sequence[tuple[float, float]], drop_cost: float, missing_cost: float
) -> tuple[float, list[list[tuple[float, float]]] | None]:
    """The ordered matching of stretches to anchored words: its cost and each word's stretches (``None``
    when dropping every stretch is cheapest)."""
    # An anchor in a gap counts for the stretch nearest to it (a spike just before or after the sound).
    nearest = [min(regions, key=lambda r: max(r[0] - a, a - r[1], 0.0)) for a in anchors]
    pieces: list[tuple[float, float]] = []
    for start, end in regions:
        inside = [min(max(a, start), end) for a, r in zip(anchors, nearest, strict=True) if r == (start, end)]
        cuts = [(a + b) / 2 for a, b in zip(inside, inside[1:], strict=False)]
        edges = [start, *cuts, end]
        pieces += list(zip(edges, edges[1:], strict=False))
    n = len(anchors)
    inf = float("inf")
    best = [inf] * n  # best[i]: cost so far with word i the last one given a stretch
    start_cost = 0.0  # no stretch given to any word yet
    back: list[list[tuple[str, int]]] = []
    for start, end in pieces:
        distance = [max(a - end, start - a, 0.0) for a in anchors]
        new, choice = [inf] * n, [("drop", -1)] * n
        # Running minimum over earlier words i' < i of best[i'] - missing_cost * i' (skipped words pay).
        run_value, run_index = start_cost + missing_cost, -1  # the virtual word -1
        for i in range(n):
            from_earlier = run_value + missing_cost * (i - 1)
            stay = best[i]
            if stay <= from_earlier:
                new[i], choice[i] = stay + distance[i], ("stay", i)
            else:
                new[i], choice[i] = from_earlier + distance[i], ("from", run_index)
            if best[i] + drop_cost < new[i]:
                new[i], choice[i] = best[i] + drop_cost, ("drop", i)
            if best[i] - missing_cost * i < run_value:
                run_value, run_index = best[i] - missing_cost * i, i
        start_cost += drop_cost
        back.append(choice)
        best = new
    finals = [best[i] + missing_cost * (n - 1 - i) for i in range(n)]
    last = min(range(n), key=lambda i: finals[i])
    if start_cost + missing_cost * n <= finals[last]:
        return start_cost + missing_cost * n, None
    assigned: list[list[tuple[float, float]]] = [[] for _ in anchors]
    word = last
    for j in range(len(pieces) - 1, -1, -1):
        if word < 0:
            break
        kind, previous = back[j][word]
        if kind != "drop":
            assigned[word].append(pieces[j])
        if kind == "from":
            word = previous
    return finals[last], assigned
