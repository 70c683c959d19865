"""The in-process ``StepBackend``: continuous batching over a transformers causal LM.

A hand-written decode loop rather than ``model.generate``: sequences join (their
prompts packed into one unpadded row per forward, then copied into free cache rows)
and leave (their slot is refilled by the last row) between any two steps, and every
row samples with its own settings. See ``kv_cache.py`` for the cache layout and
``sampling.py`` for sampling.

Works with decoder-only models whose attention layers use the standard key/value
``Cache`` interface (Llama, Mistral, Qwen, Gemma, Phi, SmolLM...).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from bot.generation.backend import FinishReason, SamplingParams, SequenceInput, SequenceUpdate
from bot.generation.kv_cache import PackedPrefillCache, SlotKVCache
from bot.generation.model_loader import LoadedModel
from bot.generation.sampling import BatchSampler, IncrementalDetokenizer, validate_params

log = logging.getLogger(__name__)

# Shorter shared prefixes are not worth a separate forward pass and a copy.
_MIN_PREFIX = 16
_MAX_PREFIXES = 8  # one per command and style is plenty; each is ~1 MB for SmolLM2
_RECENT_PROMPTS = 16


def _common_prefix(prompts: Sequence[Sequence[int]]) -> tuple[int, ...]:
    first, *rest = prompts
    n = min(len(p) for p in prompts)
    for other in rest:
        k = 0
        while k < n and first[k] == other[k]:
            k += 1
        n = k
    return tuple(first[:n])


@dataclass(slots=True)
class _Row:
    """Python-side state of one live sequence (tensor state lives in the cache)."""

    seq_id: int
    params: SamplingParams
    generator: torch.Generator | None
    detokenizer: IncrementalDetokenizer
    prompt_tokens: int
    generated: int = 0


class LocalBackend:
    """Decodes up to ``max_batch_size`` sequences together; one thread only."""

    def __init__(
        self, loaded: LoadedModel, max_batch_size: int = 32, pack_tokens: int = 256
    ) -> None:
        self.max_batch_size = max_batch_size
        self._model = loaded.model
        self._tokenizer = loaded.tokenizer
        self._device = loaded.device
        config = loaded.model.config.get_text_config()
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        self._vocab_size = int(loaded.model.get_output_embeddings().weight.shape[0])
        self._max_positions = int(getattr(config, "max_position_embeddings", 1 << 30))
        self._cache = SlotKVCache(
            num_layers=config.num_hidden_layers,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            max_rows=max_batch_size,
            dtype=loaded.dtype,
            device=loaded.device,
        )
        # sdpa takes a boolean mask (True = attend); eager adds a float mask.
        self._bool_mask = loaded.model.config._attn_implementation == "sdpa"
        self._mask_min = torch.finfo(loaded.dtype).min
        self._stop_ids = self._find_stop_ids()
        self._pad_id = self._tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = next(iter(self._stop_ids), 0)
        self._rows: list[_Row] = []
        self.pack_tokens = pack_tokens
        self._last = torch.tensor([-1], device=self._device)
        self._prefixes: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self._recent: deque[tuple[int, ...]] = deque(maxlen=_RECENT_PROMPTS)
        self._sampler: BatchSampler | None = None  # rebuilt when rows join or leave
        self._tokens = torch.zeros(0, dtype=torch.long, device=self._device)
        self._positions = torch.zeros(0, dtype=torch.long, device=self._device)

    def _find_stop_ids(self) -> frozenset[int]:
        """Ids that end a reply: the model's eos ids and the chat-template markers.

        A chat model that emits ``<|im_start|>`` (or ``<|eot_id|>``...) has finished its
        turn even if that id is not its declared eos, so every special token but
        ``unk`` stops the sequence; none of them is ever shown.
        """
        ids: set[int] = set()
        eos = getattr(self._model.generation_config, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif eos:
            ids.update(int(i) for i in eos)
        ids.update(int(i) for i in self._tokenizer.all_special_ids)
        unk = self._tokenizer.unk_token_id
        ids.discard(unk if unk is not None else -1)
        # A pad id that is not also eos never comes out of a well-behaved model.
        return frozenset(ids)

    # -- StepBackend --------------------------------------------------------------

    @property
    def active(self) -> int:
        return len(self._rows)

    @torch.inference_mode()
    def add(self, sequences: Sequence[SequenceInput]) -> list[SequenceUpdate]:
        if not sequences:
            return []
        if self.active + len(sequences) > self.max_batch_size:
            raise ValueError(
                f"{self.active} running + {len(sequences)} new exceed max_batch_size "
                f"{self.max_batch_size}"
            )
        prompts = [self._encode(seq) for seq in sequences]
        m = len(prompts)
        prefix, prefix_kv = self._prefix_for(prompts)
        shared = len(prefix)
        uses = [shared > 0 and tuple(p[:shared]) == prefix for p in prompts]
        # Each row is its full prompt right-aligned at ``end``, left-padded to the
        # group's longest; the keys/values come from packed prefills, not a padded one.
        width = max(len(p) for p in prompts)
        ids = torch.full((m, width), self._pad_id, dtype=torch.long)
        valid = torch.zeros((m, width), dtype=torch.bool)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            valid[i, width - len(p) :] = True
        ids, valid = ids.to(self._device), valid.to(self._device)
        cache = self._cache
        cache.reserve_join(m, width)
        r0, end = cache.rows, cache.end
        logits = torch.empty((m, self._vocab_size), dtype=torch.float32, device=self._device)
        for group in self._pack_groups(prompts, uses, shared):
            logits[group] = self._prefill_packed(group, prompts, uses, prefix_kv, r0, end)
        generators = [self._generator(seq.params.seed) for seq in sequences]
        params = [seq.params for seq in sequences]
        sampler = BatchSampler(params, generators, self._vocab_size, self._device)
        first = sampler(logits, torch.where(valid, ids, ids[:, -1:]))
        cache.admit(ids, valid)
        self._rows.extend(
            _Row(
                seq_id=seq.seq_id,
                params=seq.params,
                generator=gen,
                detokenizer=IncrementalDetokenizer(self._tokenizer),
                prompt_tokens=len(prompt),
            )
            for seq, gen, prompt in zip(sequences, generators, prompts, strict=True)
        )
        self._tokens = torch.cat([self._tokens, first])
        self._positions = torch.cat(
            [self._positions, torch.tensor([len(p) for p in prompts], device=self._device)]
        )
        self._sampler = None
        return self._emit(first.tolist(), offset=r0)

    @torch.inference_mode()
    def step(self) -> list[SequenceUpdate]:
        if not self._rows:
            return []
        cache = self._cache
        cache.reserve_step()
        mask = cache.append(self._tokens)
        logits = self._forward(self._tokens[:, None], self._positions[:, None], mask)
        cache.advance()
        self._positions += 1
        if self._sampler is None:
            self._sampler = BatchSampler(
                [row.params for row in self._rows],
                [row.generator for row in self._rows],
                self._vocab_size,
                self._device,
            )
        self._tokens = self._sampler(logits, cache.history())
        return self._emit(self._tokens.tolist(), offset=0)

    @torch.inference_mode()
    def remove(self, seq_ids: Iterable[int]) -> None:
        wanted = set(seq_ids)
        leaving = {i for i, row in enumerate(self._rows) if row.seq_id in wanted}
        if leaving:
            self._drop(leaving)

    @torch.inference_mode()
    def reset(self) -> None:
        self._rows.clear()
        self._cache.clear()
        self._sampler = None
        self._tokens = self._tokens[:0]
        self._positions = self._positions[:0]

    # -- internals ----------------------------------------------------------------

    def _encode(self, seq: SequenceInput) -> list[int]:
        validate_params(seq.params)
        text = self._tokenizer.apply_chat_template(
            [dict(m) for m in seq.messages], add_generation_prompt=True, tokenize=False
        )
        # The template already wrote any BOS/markers it wants: add nothing more.
        ids: list[int] = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"sequence {seq.seq_id}: empty prompt")
        if len(ids) + seq.params.max_new_tokens > self._max_positions:
            raise ValueError(
                f"sequence {seq.seq_id}: {len(ids)} prompt tokens + "
                f"{seq.params.max_new_tokens} new exceed the model's {self._max_positions}"
            )
        return ids

    def _prefix_for(self, prompts: list[list[int]]) -> tuple[tuple[int, ...], torch.Tensor | None]:
        """The shared prompt prefix this group should reuse, with its keys/values.

        Every request of a command starts with the same system prompt (about half the
        prompt of a poem), and prefill costs as much per token as decoding on a CPU. So
        the longest prefix common to the group, or to a recent prompt, is computed once
        and its keys/values copied into each row instead of recomputed.
        """
        recent = list(self._recent)
        self._recent.extend(tuple(p) for p in prompts)
        best: tuple[int, ...] = ()
        best_saved = 0
        for known in self._prefixes:
            users = sum(
                1 for p in prompts if len(p) > len(known) and tuple(p[: len(known)]) == known
            )
            if users * len(known) > best_saved:
                best, best_saved = known, users * len(known)
        # A new prefix: what the whole group shares, or what one newcomer shares with a
        # recent prompt. Keep at least one token per row for the model to read.
        shortest = min(len(p) for p in prompts) - 1
        if len(prompts) > 1:
            common = _common_prefix(prompts)
        else:
            common = max((_common_prefix([prompts[0], r]) for r in recent), key=len, default=())
        common = common[: min(shortest, len(common))]
        users = len(prompts) if len(prompts) > 1 else 1
        if len(common) >= _MIN_PREFIX and users * len(common) > best_saved:
            best = common
        if not best:
            return (), None
        kv = self._prefixes.get(best)
        if kv is None:
            kv = self._compute_prefix(best)
            self._prefixes[best] = kv
            while len(self._prefixes) > _MAX_PREFIXES:
                self._prefixes.popitem(last=False)
        self._prefixes.move_to_end(best)
        return best, kv

    def _pack_groups(
        self, prompts: list[list[int]], uses: list[bool], shared: int
    ) -> list[list[int]]:
        """Split the joining rows into packs of at most ``pack_tokens`` tokens to run.

        One forward over many tokens is far cheaper per token than a few tokens per
        forward on a CPU (matmuls with more rows), but the packed attention grows with
        the square of the pack, so packs stay a few hundred tokens long.
        """
        groups: list[list[int]] = []
        tokens = 0
        for i, p in enumerate(prompts):
            n = len(p) - (shared if uses[i] else 0)
            if groups and tokens + n <= self.pack_tokens:
                groups[-1].append(i)
                tokens += n
            else:
                groups.append([i])
                tokens = n
        return groups

    def _prefill_packed(
        self,
        group: list[int],
        prompts: list[list[int]],
        uses: list[bool],
        prefix_kv: torch.Tensor | None,
        r0: int,
        end: int,
    ) -> torch.Tensor:
        """Prefill ``group``'s prompts as one unpadded row; copy their keys/values into
        slot rows ``r0 + i``. Returns float32 logits ``[len(group), vocab]``."""
        device = self._device
        any_prefix = prefix_kv is not None and any(uses[i] for i in group)
        shared = int(prefix_kv.shape[3]) if prefix_kv is not None else 0
        skip = [shared if uses[i] else 0 for i in group]
        suffixes = [prompts[i][s:] for i, s in zip(group, skip, strict=True)]
        lengths = [len(x) for x in suffixes]
        total = sum(lengths)
        ids = torch.tensor([[t for x in suffixes for t in x]], device=device)
        positions = torch.cat(
            [torch.arange(s, s + n, device=device) for s, n in zip(skip, lengths, strict=True)]
        )[None]
        lens = torch.tensor(lengths, device=device)
        segment = torch.repeat_interleave(torch.arange(len(group), device=device), lens)
        index = torch.arange(total, device=device)
        own = (segment[:, None] == segment[None, :]) & (index[None, :] <= index[:, None])
        if any_prefix:
            sees = torch.tensor([s > 0 for s in skip], device=device)[segment]
            mask = torch.cat([sees[:, None].expand(total, shared), own], dim=1)
        else:
            mask = own
        last = lens.cumsum(0) - 1
        scratch = PackedPrefillCache(
            self._cache.num_layers, prefix_kv if any_prefix else None, total, self._cache
        )
        logits = self._forward(ids, positions, mask[None, None], cache=scratch, keep=last)
        packed = scratch.packed()
        offset = 0
        for j, i in enumerate(group):
            row = r0 + i
            n = lengths[j]
            if skip[j]:
                assert prefix_kv is not None
                self._cache.write_row(row, end - n - skip[j], prefix_kv)
            self._cache.write_row(row, end - n, packed[:, :, :, offset : offset + n])
            offset += n
        return logits

    def _compute_prefix(self, prefix: tuple[int, ...]) -> torch.Tensor:
        """Keys/values ``[layers, 2, kv_heads, len, head_dim]`` of ``prefix`` alone."""
        scratch = DynamicCache(config=self._model.config)
        ids = torch.tensor([prefix], device=self._device)
        self._model(input_ids=ids, cache=scratch, use_cache=True, logits_to_keep=1)
        layers: list[Any] = list(scratch.layers)
        return torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in layers])

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self._device).manual_seed(seed)

    def _forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        cache: Any = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits as float32 ``[rows, vocab]``: each row's last position, or the
        positions ``keep`` of a single packed row.

        Positions to keep are always passed as an index tensor: a sliced
        ``hidden_states[:, -1:]`` of a multi-token batch is not contiguous, and the
        tied output projection then runs as a ``bmm`` that copies the 49k x 576
        weight once per row (1.3 s and 1.8 GB for a prefill of 32 rows here)."""
        attention: torch.Tensor = mask
        if not self._bool_mask:
            attention = torch.zeros(mask.shape, dtype=self._cache.dtype, device=self._device)
            attention.masked_fill_(~mask, self._mask_min)
        out: Any = self._model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            cache=self._cache if cache is None else cache,
            use_cache=True,
            logits_to_keep=keep if keep is not None else self._last,
        )
        if keep is not None:
            return out.logits[0].float()
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    def _emit(self, tokens: list[int], offset: int) -> list[SequenceUpdate]:
        """Turn the rows' new tokens (rows ``offset`` onwards) into updates; finished
        rows leave the batch before this returns."""
        updates: list[SequenceUpdate] = []
        leaving: set[int] = set()
        for i, token in enumerate(tokens, start=offset):
            row = self._rows[i]
            row.generated += 1
            finished: FinishReason | None = None
            if token in self._stop_ids:
                finished = "eos"
                delta = row.detokenizer.flush()
            else:
                delta = row.detokenizer.push(token)
                if (
                    row.generated >= row.params.max_new_tokens
                    or row.prompt_tokens + row.generated >= self._max_positions
                ):
                    finished = "length"
                    delta += row.detokenizer.flush()
            if finished:
                leaving.add(i)
            updates.append(SequenceUpdate(row.seq_id, delta, row.generated, finished))
        if leaving:
            self._drop(leaving)
        return updates

    def _drop(self, leaving: set[int]) -> None:
        moves = self._cache.remove(leaving)
        if moves:
            src = torch.tensor([s for s, _ in moves], device=self._device)
            dst = torch.tensor([d for _, d in moves], device=self._device)
            self._tokens[dst] = self._tokens[src]
            self._positions[dst] = self._positions[src]
            for s, d in moves:
                self._rows[d] = self._rows[s]
        keep = len(self._rows) - len(leaving)
        del self._rows[keep:]
        self._tokens = self._tokens[:keep]
        self._positions = self._positions[:keep]
        self._sampler = None
