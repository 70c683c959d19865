"""The batch sampler and the incremental detokenizer, without a model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from bot.generation.backend import SamplingParams  # noqa: E402
from bot.generation.sampling import (  # noqa: E402
    BatchSampler,
    IncrementalDetokenizer,
    validate_params,
)

VOCAB = 16
CPU = torch.device("cpu")


def sampler(*params: SamplingParams, seeds: tuple[int | None, ...] = ()) -> BatchSampler:
    gens = [
        torch.Generator().manual_seed(s) if s is not None else None
        for s in (seeds or (None,) * len(params))
    ]
    return BatchSampler(list(params), gens, VOCAB, CPU)


def peaked(rows: int, best: list[int]) -> torch.Tensor:
    logits = torch.zeros(rows, VOCAB)
    for row, token in enumerate(best):
        logits[row, token] = 5.0
    return logits


def test_greedy_rows_take_the_argmax() -> None:
    s = sampler(
        SamplingParams(temperature=0, repetition_penalty=1.0),
        SamplingParams(temperature=0, repetition_penalty=1.0),
    )
    assert s.all_greedy
    assert s(peaked(2, [3, 11]), None).tolist() == [3, 11]


def test_top_k_one_is_greedy_even_when_sampling() -> None:
    s = sampler(SamplingParams(temperature=2.0, top_k=1, repetition_penalty=1.0))
    logits = torch.randn(1, VOCAB)
    best = int(logits.argmax())
    assert all(int(s(logits.clone(), None)[0]) == best for _ in range(20))


def test_samples_stay_inside_top_k_and_top_p() -> None:
    logits = torch.tensor([[4.0, 3.9, 3.8, 0.0] + [-5.0] * (VOCAB - 4)])
    top_k = sampler(SamplingParams(temperature=1.0, top_k=2, top_p=1.0, repetition_penalty=1.0))
    top_p = sampler(SamplingParams(temperature=1.0, top_k=10, top_p=0.5, repetition_penalty=1.0))
    assert {int(top_k(logits.clone(), None)[0]) for _ in range(200)} == {0, 1}
    # The first two candidates hold ~0.7 of the mass: top_p=0.5 keeps two at most.
    assert {int(top_p(logits.clone(), None)[0]) for _ in range(200)} <= {0, 1}


def test_each_row_uses_its_own_settings() -> None:
    s = sampler(
        SamplingParams(temperature=0, repetition_penalty=1.0),
        SamplingParams(temperature=1.0, top_k=3, repetition_penalty=1.0),
    )
    logits = torch.tensor([[float(VOCAB - i) for i in range(VOCAB)]] * 2)
    seen = {tuple(s(logits.clone(), None).tolist()) for _ in range(100)}
    assert {row0 for row0, _ in seen} == {0}
    assert {row1 for _, row1 in seen} == {0, 1, 2}


def test_same_seed_same_draws_whatever_the_neighbours() -> None:
    params = SamplingParams(temperature=1.0, top_k=8, repetition_penalty=1.0)
    # Distinct values: tied logits may come out of top-k in a different order.
    logits = torch.linspace(1.0, 0.0, VOCAB)

    def draws(s: BatchSampler, rows: int) -> list[int]:
        return [int(s(logits.repeat(rows, 1), None)[0]) for _ in range(30)]

    alone = draws(sampler(params, seeds=(5,)), 1)
    wide = SamplingParams(temperature=1.0, top_k=0, repetition_penalty=1.0)
    assert draws(sampler(params, wide, seeds=(5, None)), 2) == alone
    assert draws(sampler(params, seeds=(6,)), 1) != alone


def test_repetition_penalty_applies_to_seen_ids_only() -> None:
    s = sampler(SamplingParams(temperature=0, repetition_penalty=2.0))
    logits = torch.tensor([[3.0, 2.0, -1.0] + [0.0] * (VOCAB - 3)])
    history = torch.tensor([[0, 2, 0]])  # a repeated id is penalised once
    assert int(s(logits, history)[0]) == 1
    assert logits[0, :3].tolist() == [1.5, 2.0, -2.0]


@pytest.mark.parametrize(
    "bad",
    [
        SamplingParams(max_new_tokens=0),
        SamplingParams(temperature=-1),
        SamplingParams(top_p=0),
        SamplingParams(top_k=-1),
        SamplingParams(repetition_penalty=0),
    ],
)
def test_invalid_params_are_refused(bad: SamplingParams) -> None:
    with pytest.raises(ValueError):
        validate_params(bad)


class ByteTokenizer:
    """Each id is one UTF-8 byte; decoding invalid bytes gives U+FFFD like real ones.

    Id 0 is a special token that ``skip_special_tokens`` hides.
    """

    def decode(self, ids: list[int], skip_special_tokens: bool = False, **_: object) -> str:
        data = bytes(i for i in ids if i != 0 or not skip_special_tokens)
        return data.decode("utf-8", errors="replace")


def test_detokenizer_holds_back_incomplete_characters() -> None:
    detok = IncrementalDetokenizer(ByteTokenizer())
    text = "né 日本 🙂!"
    deltas = [detok.push(b) for b in text.encode()]
    assert "".join(deltas) == text
    assert "\ufffd" not in "".join(deltas)
    assert deltas[1] == ""  # first byte of "é" alone: nothing to show yet


def test_detokenizer_skips_special_tokens_and_flushes() -> None:
    detok = IncrementalDetokenizer(ByteTokenizer())
    deltas = [detok.push(i) for i in [104, 0, 105, 0xE6]]  # "h", special, "i", broken tail
    assert "".join(deltas) == "hi"
    assert detok.flush() == ""  # an incomplete character at the end is dropped
