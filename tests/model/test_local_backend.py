"""The local backend with the real default model (float32, CPU)."""

from __future__ import annotations

import logging
import re

import pytest

from bot.config import Settings
from bot.generation.backend import SamplingParams, SequenceInput, SequenceUpdate
from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import LoadedModel, load_model
from bot.generation.sampling import IncrementalDetokenizer
from bot.prompts import poem_messages

pytestmark = pytest.mark.model

GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)
TEMPLATE_TOKEN = re.compile(r"<\|[a-z_]+\|>|</?s>")


def seq(seq_id: int, theme: str, form: str = "haiku", **params: object) -> SequenceInput:
    return SequenceInput(seq_id, poem_messages(theme, form), SamplingParams(**params))  # type: ignore[arg-type]


def collect(texts: dict[int, str], updates: list[SequenceUpdate]) -> list[SequenceUpdate]:
    for update in updates:
        texts[update.seq_id] = texts.get(update.seq_id, "") + update.text_delta
    return updates


def run_to_end(backend: LocalBackend, sequences: list[SequenceInput]) -> dict[int, str]:
    texts: dict[int, str] = {}
    collect(texts, backend.add(sequences))
    while backend.active:
        collect(texts, backend.step())
    return texts


@pytest.fixture
def backend(loaded: LoadedModel) -> LocalBackend:
    return LocalBackend(loaded, max_batch_size=8)


def test_second_load_uses_the_converted_cache(
    loaded: LoadedModel, model_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caches = list(model_settings.model_cache_dir.iterdir())
    assert [c.name for c in caches if c.name.startswith(".")] == []  # no half-written temp
    with caplog.at_level(logging.INFO, logger="bot.generation.model_loader"):
        again = load_model(model_settings)
    assert "converting" not in caplog.text
    assert again.source == loaded.source
    assert again.source.startswith(str(model_settings.model_cache_dir))


def test_poem_is_english_text_without_template_tokens(backend: LocalBackend) -> None:
    texts = run_to_end(backend, [seq(1, "the sea at night", max_new_tokens=64, seed=3)])
    text = texts[1]
    assert text.strip()
    assert TEMPLATE_TOKEN.search(text) is None
    assert len(re.findall(r"[A-Za-z]+", text)) >= 3
    assert backend.active == 0


def test_joins_and_leaves_do_not_change_greedy_output(backend: LocalBackend) -> None:
    themes = [
        ("the sea at night", "haiku"),
        ("autumn leaves falling on a quiet town whose name nobody remembers", "sonnet"),
        ("a cat", "limerick"),
    ]
    alone = [
        run_to_end(backend, [seq(0, theme, form, max_new_tokens=24, temperature=0.0)])[0]
        for theme, form in themes
    ]
    texts: dict[int, str] = {}
    mixed = [
        seq(i, theme, form, max_new_tokens=24, temperature=0.0)
        for i, (theme, form) in enumerate(themes)
    ]
    # A sampled companion that is removed mid-way, one that ends early, and joins of
    # shorter and longer prompts at different steps.
    collect(texts, backend.add([mixed[0], seq(100, "x", max_new_tokens=3, temperature=1.0)]))
    step = 0
    while backend.active:
        step += 1
        if step == 2:
            collect(texts, backend.add([mixed[1]]))
        if step == 4:
            long_theme = "a very long theme " * 6
            collect(texts, backend.add([mixed[2], seq(101, long_theme, "ghazal", seed=1)]))
        if step == 9:
            backend.remove([101])
        collect(texts, backend.step())
    assert [texts[i] for i in range(3)] == alone


def test_same_seed_same_text(backend: LocalBackend) -> None:
    def sample(seed: int) -> str:
        texts = run_to_end(backend, [seq(1, "rain", max_new_tokens=20, temperature=1.0, seed=seed)])
        return texts[1]

    first = sample(7)
    assert sample(7) == first
    assert sample(8) != first


def test_remove_frees_the_slot(loaded: LoadedModel) -> None:
    backend = LocalBackend(loaded, max_batch_size=2)
    backend.add([seq(1, "snow"), seq(2, "fire")])
    with pytest.raises(ValueError):
        backend.add([seq(3, "wind")])
    backend.remove([1])
    assert backend.active == 1
    assert {u.seq_id for u in backend.step()} == {2}
    backend.add([seq(3, "wind")])
    assert {u.seq_id for u in backend.step()} == {2, 3}
    backend.reset()
    assert backend.active == 0
    assert backend.step() == []


def test_max_new_tokens_is_honoured(backend: LocalBackend) -> None:
    updates = backend.add([seq(1, "stone", max_new_tokens=1), seq(2, "moss", max_new_tokens=5)])
    assert [(u.seq_id, u.generated_tokens, u.finished) for u in updates] == [
        (1, 1, "length"),
        (2, 1, None),
    ]
    seen = updates[1:]
    while backend.active:
        seen += backend.step()
    assert [u.generated_tokens for u in seen] == [1, 2, 3, 4, 5]
    assert seen[-1].finished == "length"


def test_detokenizer_streams_multibyte_text(loaded: LoadedModel) -> None:
    tokenizer = loaded.tokenizer
    text = "Café ☕ naïve 日本語 — “quotes”\n  indented 🙂 end"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tokenizer)
    deltas = [detok.push(i) for i in ids]
    assert "".join(deltas) + detok.flush() == text
    assert all("\ufffd" not in d for d in deltas)
