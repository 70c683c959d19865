"""A key/value cache laid out for continuous batching.

All layers' keys and values live in one preallocated tensor
``[layers, 2, rows, kv_heads, columns, head_dim]``. Rows are batch slots; columns are
a timeline shared by every row, each row left-padded so that all rows' newest token
sits in the same column. The live part is the window ``[start, end)``:

* a decode step writes column ``end`` for every row (no per-row scatter);
* a joining group is prefilled straight into free rows, right-aligned at ``end``;
* a leaving row is replaced by the last live row (one row copied, not the batch);
* columns left of every row's first token are dropped by moving ``start``, which
  also leaves room for longer prompts to join later;
* the buffer grows in chunks of columns, so the whole cache is copied once per
  ``chunk`` steps rather than on every step as ``DynamicCache``'s ``torch.cat`` does.

The model writes through transformers' ``Cache`` interface: the backend sets the
region (rows and columns) of the next forward pass with ``target`` first.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class _SlotLayer(CacheLayerMixin):
    """One layer's view into the shared buffer (transformers calls ``update`` per layer)."""

    is_sliding = False

    def __init__(self, owner: SlotKVCache | PackedPrefillCache, index: int) -> None:
        super().__init__()
        self._owner = owner
        self._index = index
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._owner.write(self._index, key_states, value_states)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        # Unused: the backend always passes a ready 4D mask.
        return self._owner.end - self._owner.start + query_length, 0

    def get_seq_length(self) -> int:
        return self._owner.end - self._owner.start

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        pass


class SlotKVCache(Cache):
    """Rows x shared columns of keys and values for every layer; see the module doc."""

    def __init__(
        self,
        num_layers: int,
        kv_heads: int,
        head_dim: int,
        max_rows: int,
        dtype: torch.dtype,
        device: torch.device,
        chunk: int = 64,
    ) -> None:
        super().__init__(layers=[_SlotLayer(self, i) for i in range(num_layers)])
        self.num_layers = num_layers
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.max_rows = max_rows
        self.dtype = dtype
        self.device = device
        self.chunk = chunk
        self.rows = 0  # live rows are [0, rows)
        self.start = 0
        self.end = 0
        self._buf = self._alloc(0, 0)
        # The token id whose key/value sits in each cell, for the repetition penalty;
        # padding cells repeat an id of the same row (penalties are per distinct id).
        self.ids = torch.zeros((0, 0), dtype=torch.long, device=device)
        # Which cells hold real tokens; the attention mask is a slice of it.
        self.valid = torch.zeros((0, 0), dtype=torch.bool, device=device)
        # rows [r0, r1), write columns [c0, c1), attend from column lo
        self._region = (0, 0, 0, 0, 0)

    # -- geometry ---------------------------------------------------------------------

    @property
    def capacity(self) -> tuple[int, int]:
        return self._buf.shape[2], self._buf.shape[4]

    def _alloc(self, rows: int, columns: int) -> torch.Tensor:
        # Zeros, not empty: masked cells still meet the values in attention
        # (0 weight x NaN garbage = NaN), so every cell must hold a finite number.
        shape = (self.num_layers, 2, rows, self.kv_heads, columns, self.head_dim)
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def _relayout(self, rows: int, left: int, right: int) -> None:
        """Reallocate with ``rows`` slots, ``left`` free columns before the window and at
        least ``right`` after it, keeping the live rows' window."""
        width = self.end - self.start
        columns = -(-(left + width + right) // self.chunk) * self.chunk
        rows = max(rows, self.rows)
        buf = self._alloc(rows, columns)
        ids = torch.zeros((rows, columns), dtype=torch.long, device=self.device)
        valid = torch.zeros((rows, columns), dtype=torch.bool, device=self.device)
        if self.rows and width:
            old = slice(self.start, self.end)
            new = slice(left, left + width)
            buf[:, :, : self.rows, :, new] = self._buf[:, :, : self.rows, :, old]
            ids[: self.rows, new] = self.ids[: self.rows, old]
            valid[: self.rows, new] = self.valid[: self.rows, old]
        self._buf, self.ids, self.valid = buf, ids, valid
        self.start, self.end = left, left + width

    def reserve_join(self, new_rows: int, prompt_len: int) -> None:
        """Make room for ``new_rows`` rows whose prompts take the ``prompt_len`` columns
        just before ``end``, plus one column for the next decode step."""
        rows_cap, columns_cap = self.capacity
        needed = self.rows + new_rows
        if needed > self.max_rows:
            raise ValueError(f"{needed} rows exceed the batch limit of {self.max_rows}")
        # Rows grow by doubling (capped) so a trickle of joins rarely reallocates.
        rows = needed if needed <= rows_cap else min(self.max_rows, max(needed, 2 * rows_cap, 8))
        if self.rows == 0:
            # Nothing live: restart the timeline so the prompt ends at its own length.
            if rows > rows_cap or prompt_len + 1 > columns_cap:
                self.start = self.end = 0
                self._relayout(rows, prompt_len, self.chunk)
            self.start = self.end = prompt_len
        elif rows > rows_cap or self.end < prompt_len or self.end + 1 > columns_cap:
            self._relayout(rows, max(0, prompt_len - (self.end - self.start)), self.chunk)

    def admit(self, ids: torch.Tensor, valid: torch.Tensor) -> None:
        """Record a prefilled group (left-padded ``ids`` and ``valid``, ``[m, P]``) as live
        rows, after the forward pass wrote its keys and values."""
        m, length = ids.shape
        r0, r1, c0, end = self.rows, self.rows + m, self.end - length, self.end
        start = min(self.start, c0) if self.rows else c0
        if self.rows and start < self.start:
            # The window widens to the left: those cells are padding for the old rows.
            self.valid[:r0, start : self.start] = False
            self.ids[:r0, start : self.start] = self.ids[:r0, end - 1 : end]
        last = ids[:, -1:]
        self.valid[r0:r1, start:c0] = False
        self.ids[r0:r1, start:c0] = last
        self.valid[r0:r1, c0:end] = valid
        self.ids[r0:r1, c0:end] = torch.where(valid, ids, last)
        self.rows, self.start = r1, start

    def write_prefix(self, rows: tuple[int, int], column: int, kv: torch.Tensor) -> None:
        """Copy a shared prefix's keys/values ``[layers, 2, kv_heads, len, head_dim]``
        into ``rows``, starting at ``column``."""
        length = kv.shape[3]
        self._buf[:, :, rows[0] : rows[1], :, column : column + length] = kv[:, :, None]

    def write_row(self, row: int, column: int, kv: torch.Tensor) -> None:
        """Copy keys/values ``[layers, 2, kv_heads, len, head_dim]`` into one row,
        starting at ``column``."""
        self._buf[:, :, row, :, column : column + kv.shape[3]] = kv

    def reserve_step(self) -> None:
        """Make sure column ``end`` exists for the next decode step."""
        if self.end >= self.capacity[1]:
            # Drop the dead columns on the left, keep a chunk of room on the right.
            self._relayout(self.capacity[0], 0, self.chunk)

    def append(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mark column ``end`` as the live rows' next token and return the 4D boolean
        attention mask ``[rows, 1, 1, width]`` of the decode step over the window."""
        end = self.end
        self.ids[: self.rows, end] = tokens
        self.valid[: self.rows, end] = True
        self.target((0, self.rows), (end, end + 1), self.start)
        return self.valid[: self.rows, None, None, self.start : end + 1]

    def advance(self) -> None:
        """The decode step's keys and values are in: column ``end`` is now history."""
        self.end += 1

    def history(self) -> torch.Tensor:
        """Token ids ``[rows, width]`` of the window, for the repetition penalty."""
        return self.ids[: self.rows, self.start : self.end]

    # -- the model writes here --------------------------------------------------------

    def target(self, rows: tuple[int, int], columns: tuple[int, int], attend_from: int) -> None:
        """Set the rows and columns the next forward pass writes, and where its
        attention starts (``start`` for a decode step, the prompt for a prefill)."""
        self._region = (rows[0], rows[1], columns[0], columns[1], attend_from)

    def write(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r0, r1, c0, c1, lo = self._region
        if keys.shape[2] != c1 - c0 or keys.shape[0] != r1 - r0:
            raise RuntimeError(
                f"cache region {self._region} does not match key states {tuple(keys.shape)}"
            )
        slot = self._buf[layer]
        slot[0, r0:r1, :, c0:c1] = keys
        slot[1, r0:r1, :, c0:c1] = values
        return slot[0, r0:r1, :, lo:c1], slot[1, r0:r1, :, lo:c1]

    # -- rows leaving -----------------------------------------------------------------

    def remove(self, leaving: set[int]) -> list[tuple[int, int]]:
        """Drop rows ``leaving``: the last live rows move into their slots.

        Returns the ``(src, dst)`` moves so the caller can reorder its own per-row
        state the same way. Copies only the moved rows, never the whole batch.
        """
        keep = self.rows - len(leaving)
        holes = sorted(r for r in leaving if r < keep)
        sources = [r for r in range(keep, self.rows) if r not in leaving]
        moves = list(zip(sources, holes, strict=True))
        if moves:
            s = torch.tensor(sources, device=self.device)
            d = torch.tensor(holes, device=self.device)
            cols = slice(self.start, self.end)
            self._buf[:, :, d, :, cols] = self._buf[:, :, s, :, cols]
            self.ids[d, cols] = self.ids[s, cols]
            self.valid[d, cols] = self.valid[s, cols]
        self.rows = keep
        if keep == 0:
            self.start = self.end = 0
        elif self.end > self.start:
            # Columns that are padding in every remaining row are dead: skip them.
            live = self.valid[:keep, self.start : self.end].any(dim=0)
            self.start += int(live.int().argmax())
        return moves

    def clear(self) -> None:
        self.rows = 0
        self.start = self.end = 0

    # -- transformers' Cache API the models may query ----------------------------------

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.end - self.start

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.end - self.start + query_length, 0


class PackedPrefillCache(Cache):
    """A one-row scratch cache for a packed prefill: ``[prefix | packed prompts]``.

    Several prompts are concatenated into a single row (no padding) and run through
    one forward pass with a block-diagonal causal mask; the shared prefix's keys and
    values sit in front so every prompt can attend to them. The backend then copies
    each prompt's keys and values into its own row of the ``SlotKVCache``.
    """

    def __init__(
        self, num_layers: int, prefix: torch.Tensor | None, packed: int, like: SlotKVCache
    ) -> None:
        super().__init__(layers=[_SlotLayer(self, i) for i in range(num_layers)])
        self.start = 0
        self.end = 0 if prefix is None else int(prefix.shape[3])
        shape = (num_layers, 2, like.kv_heads, self.end + packed, like.head_dim)
        self.buf = torch.empty(shape, dtype=like.dtype, device=like.device)
        if prefix is not None:
            self.buf[:, :, :, : self.end] = prefix

    def write(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        slot = self.buf[layer]
        slot[0, :, self.end :] = keys[0]
        slot[1, :, self.end :] = values[0]
        return slot[0][None], slot[1][None]

    def packed(self) -> torch.Tensor:
        """Keys/values ``[layers, 2, kv_heads, packed, head_dim]`` of the packed tokens."""
        return self.buf[:, :, :, self.end :]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.end

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.end + query_length, 0
