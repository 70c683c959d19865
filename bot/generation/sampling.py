"""Choosing each row's next token inside a shared batch, and turning tokens into text.

Every row of the running batch has its own temperature, top-k, top-p, repetition
penalty and optional seed. The work is vectorised over rows and never sorts the whole
vocabulary: top-k narrows each row to at most ``k`` candidates first, and top-p is
applied to those (transformers sorts all 49k logits per row for top-p, which costs as
much as the model's forward pass at batch 32 on a CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bot.generation.backend import SamplingParams

# A sampled Exp(1) can be exactly 0; dividing 0 probability by it would give NaN,
# which argmax treats as the largest value.
_MIN_NOISE = 1e-20


def validate_params(params: SamplingParams) -> None:
    """Raise ``ValueError`` for settings the sampler cannot honour."""
    if params.max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    if params.temperature < 0:
        raise ValueError("temperature must be >= 0 (0 means greedy)")
    if not 0 < params.top_p <= 1:
        raise ValueError("top_p must be in (0, 1]")
    if params.top_k < 0:
        raise ValueError("top_k must be >= 0 (0 means no top-k narrowing)")
    if params.repetition_penalty <= 0:
        raise ValueError("repetition_penalty must be > 0")


class BatchSampler:
    """The sampling settings of the rows of a batch, as tensors, in row order.

    Built again whenever rows join or leave (cheap: a few small tensors), so the
    per-step work is a handful of vectorised ops whatever the mix of settings.
    """

    def __init__(
        self,
        params: Sequence[SamplingParams],
        generators: Sequence[torch.Generator | None],
        vocab_size: int,
        device: torch.device,
    ) -> None:
        if len(params) != len(generators):
            raise ValueError("one generator slot per row is required")
        self.rows = len(params)
        greedy = [p.temperature == 0 for p in params]
        self.all_greedy = all(greedy)
        self.any_greedy = any(greedy)
        self._greedy = torch.tensor(greedy, dtype=torch.bool, device=device)
        # Greedy rows still run through the sampling ops of a mixed batch; a
        # temperature of 1 keeps their (discarded) values finite.
        self._temperature = torch.tensor(
            [p.temperature or 1.0 for p in params], dtype=torch.float32, device=device
        ).unsqueeze(1)
        self._top_p = torch.tensor(
            [p.top_p for p in params], dtype=torch.float32, device=device
        ).unsqueeze(1)
        penalties = [p.repetition_penalty for p in params]
        self.penalize = any(p != 1.0 for p in penalties)
        self._penalty = torch.tensor(penalties, dtype=torch.float32, device=device).unsqueeze(1)
        # Rows sampling without top-k need the whole vocabulary as candidates: only
        # then does the batch pay for a full sort.
        sampled_k = [
            min(p.top_k, vocab_size) if p.top_k > 0 else vocab_size
            for p, g in zip(params, greedy, strict=True)
            if not g
        ]
        self.k_max = max(sampled_k, default=1)
        row_k = [
            self.k_max if g else (min(p.top_k, vocab_size) if p.top_k > 0 else vocab_size)
            for p, g in zip(params, greedy, strict=True)
        ]
        self._beyond_k = torch.arange(self.k_max, device=device).unsqueeze(0) >= torch.tensor(
            row_k, device=device
        ).unsqueeze(1)
        self._seeded = [
            (row, gen, row_k[row])
            for row, gen in enumerate(generators)
            if gen is not None and not greedy[row]
        ]

    def __call__(self, logits: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
        """Next token id per row.

        ``logits``: float32 ``[rows, vocab]``, modified in place. ``history``: token ids
        ``[rows, n]`` each row has seen (prompt and output); padding may repeat any
        id of the row, since a penalty is applied once per distinct id.
        """
        if self.penalize and history is not None:
            # The same penalty as transformers' RepetitionPenaltyLogitsProcessor,
            # but only on the ids each row has seen instead of the vocabulary.
            seen = logits.gather(1, history)
            seen = torch.where(seen > 0, seen / self._penalty, seen * self._penalty)
            logits.scatter_(1, history, seen)
        if self.all_greedy:
            return logits.argmax(dim=-1)
        values, candidates = logits.topk(self.k_max, dim=-1)  # sorted, largest first
        values = (values / self._temperature).masked_fill_(self._beyond_k, float("-inf"))
        probs = values.softmax(dim=-1)
        # Nucleus on the narrowed candidates: keep the smallest prefix whose mass
        # reaches top_p (the first candidate always stays).
        mass_before = probs.cumsum(dim=-1) - probs
        probs = probs.masked_fill_(mass_before >= self._top_p, 0.0)
        # Exponential race (Gumbel-max in disguise): argmax(p / E) with E ~ Exp(1)
        # draws from p. It lets one batched op sample every row, and a seeded row
        # draws its own noise so its choice depends only on its own generator.
        noise = torch.empty_like(probs).exponential_()
        for row, gen, k in self._seeded:
            noise[row, :k].exponential_(generator=gen)
        choice = (probs / noise.clamp_min_(_MIN_NOISE)).argmax(dim=-1, keepdim=True)
        sampled = candidates.gather(1, choice).squeeze(1)
        if self.any_greedy:
            return torch.where(self._greedy, logits.argmax(dim=-1), sampled)
        return sampled


class IncrementalDetokenizer:
    """Text deltas for a growing list of token ids.

    Decoding one token at a time breaks multi-byte characters (byte-level BPE) and
    drops or doubles word-leading spaces (SentencePiece). Like TGI and vLLM, decode a
    short window of recent ids twice, with and without the newest ones, and emit the
    difference; hold back while the tail is an incomplete character (U+FFFD).
    Special tokens (chat-template markers) are skipped, so they never reach the text.
    """

    __slots__ = ("_ids", "_prefix_offset", "_read_offset", "_tokenizer")

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        text: str = self._tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return text

    def push(self, token_id: int) -> str:
        """Add one generated id; return the newly completed text (maybe "")."""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return full[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back when the sequence ends (a broken tail is dropped)."""
        if self._read_offset == len(self._ids):
            return ""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        self._read_offset = len(self._ids)
        return full[len(prefix) :].rstrip("\ufffd")
