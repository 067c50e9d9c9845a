"""``granite_nar.model.modeling_projector``: output shapes, batch invariance, and the window folding against
the slow reference in ``granite_nar.testing.reference``."""

import torch
from testers import GraniteSpeechNarProjectorModelTester

from granite_nar.lengths import num_projector_tokens
from granite_nar.testing.reference import reference_windows


def test_model():
    tester = GraniteSpeechNarProjectorModelTester()
    tester.create_and_check_model(*tester.prepare_config_and_inputs())


def test_projector_window_folding_matches_reference():
    tester = GraniteSpeechNarProjectorModelTester(seq_lengths=[23, 9])
    projector = tester.create_model(seed=4).double()
    _, states, mask = tester.prepare_config_and_inputs(seed=2, dtype=torch.float64)
    width = projector.config.encoder_hidden_size
    assert states.shape == (2, 23, width)
    fast = projector(states, mask)
    for b, n in enumerate(mask.sum(1).tolist()):
        chunks = states[b, :n].view(n, projector.num_chunks, -1)
        hidden = torch.nn.functional.gelu(projector.proj(projector.norm(chunks).view(n, width)))
        windows = reference_windows(hidden, projector.config.window_size)
        alone = torch.cat([projector.qformer(w[None])[0] for w in windows])
        torch.testing.assert_close(fast[b, : alone.shape[0]], alone, atol=1e-10, rtol=0)
        assert alone.shape[0] == num_projector_tokens(n, 15, 5) == -(n // -15) * 3


def test_padded_batch_computes_the_used_windows_of_each_utterance_alone():
    # 16 frames: 3 audio tokens, all in the first window; the second window holds no token and is skipped.
    lengths = [16, 47, 5, 31, 4]
    tester = GraniteSpeechNarProjectorModelTester(seq_lengths=lengths)
    projector = tester.create_model(seed=6).double()
    _, states, mask = tester.prepare_config_and_inputs(seed=3, dtype=torch.float64)
    calls = []
    projector.qformer.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    batch = projector(states, mask)
    assert calls == [1 + 3 + 1 + 2 + 0]  # ceil((T // 5) / 3) windows per utterance, in one Q-Former call
    for b, n in enumerate(lengths):
        alone = projector(states[b : b + 1, :n])[0]
        torch.testing.assert_close(batch[b, : n // 5], alone[: n // 5], atol=1e-12, rtol=0)
        assert not batch[b, -(n // 5 // -3) * 3 :].any()  # rows of windows without a token are zero
