"""What the engine needs from a model: the contract between scheduler and backend.

The engine (``engine.py``) owns queueing, fairness, limits, cancellation, time
budgets, stop strings and streaming. A ``StepBackend`` owns the model: it decodes
many sequences together, one token per step, and lets sequences join and leave the
running batch between steps (continuous batching). It is only ever called from the
engine's single generation thread, so it needs no locking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ChatMessage = Mapping[str, str]
"""One chat turn: ``{"role": "system" | "user" | "assistant", "content": str}``."""

FinishReason = Literal["eos", "length"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Per-request sampling settings; honoured per row inside a shared batch."""

    max_new_tokens: int = 160
    temperature: float = 0.8  # 0 means greedy
    top_p: float = 0.95
    top_k: int = 50  # 0 means no top-k narrowing
    repetition_penalty: float = 1.1
    stop: tuple[str, ...] = ()  # applied by the engine on the decoded text
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class SequenceInput:
    """A request entering the running batch."""

    seq_id: int
    messages: tuple[ChatMessage, ...]
    params: SamplingParams


@dataclass(frozen=True, slots=True)
class SequenceUpdate:
    """What one step produced for one sequence."""

    seq_id: int
    text_delta: str  # newly decoded text; "" while a multi-byte character is incomplete
    generated_tokens: int  # tokens generated so far for this sequence
    finished: FinishReason | None = None  # set on the step the sequence ends


class StepBackend(Protocol):
    """A model decoding many sequences together. Only called from one thread."""

    max_batch_size: int

    def add(self, sequences: Sequence[SequenceInput]) -> list[SequenceUpdate]:
        """Prefill ``sequences`` (batched) and return each one's first token.

        Raises if the prefill fails; the engine then fails exactly these sequences.
        A failed ``add`` must leave the batch as it was before the call (none of
        ``sequences`` stays in it): the engine retries a failed batch one sequence at a
        time, so one bad request does not fail the others admitted with it.
        An update may already have ``finished`` set (e.g. ``max_new_tokens == 1``).
        """
        ...

    def step(self) -> list[SequenceUpdate]:
        """Decode one token for every active sequence.

        A sequence whose update has ``finished`` set has already left the batch.
        Raises if the step fails; the engine then fails every active sequence and
        calls ``reset``.
        """
        ...

    def remove(self, seq_ids: Iterable[int]) -> None:
        """Drop sequences from the batch at once (cancelled, timed out, stop string).

        The engine only passes ids that are in the batch right now.
        """
        ...

    def reset(self) -> None:
        """Forget every sequence (after a failed step)."""
        ...

    @property
    def active(self) -> int:
        """How many sequences are in the running batch."""
        ...
