"""Fakes at the edges: a deterministic ``StepBackend`` for engine tests.

``FakeStepBackend`` "writes" the words of the last chat message, one word per token,
then ends with ``eos`` (or ``length`` at ``max_new_tokens``). So a request whose prompt
is ``"a b c"`` produces ``"a b c"`` and the test knows exactly what to expect.

It records what it saw (add calls, batch sizes, params, removals, resets, threads), can
sleep per step, can be driven one step at a time (``manual_steps=True`` + ``allow``), and
can be told to raise in ``add``/``step`` for particular sequences.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bot.generation.backend import FinishReason, SamplingParams, SequenceInput, SequenceUpdate

# How long a gated step waits for ``allow``/``open`` before giving up: long enough for
# any test, short enough that a forgotten gate cannot hang the suite.
GATE_TIMEOUT_S = 5.0


def words_of(seq: SequenceInput) -> list[str]:
    """The default script: the words of the last message, each followed by its space."""
    words = seq.messages[-1]["content"].split()
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


@dataclass
class _Seq:
    input: SequenceInput
    script: list[str]
    generated: int = 0


@dataclass
class FakeStepBackend:
    max_batch_size: int = 8
    step_delay: float = 0.0  # seconds each add/step sleeps, to look like a slow model
    manual_steps: bool = False  # step() waits for allow(n) / open()
    script: Callable[[SequenceInput], list[str]] = words_of
    fail_add: Callable[[SequenceInput], bool] = lambda seq: False
    # (sequence, tokens it has generated so far) -> raise in this step?
    fail_step: Callable[[SequenceInput, int], bool] = lambda seq, generated: False

    # What the engine did to us, for assertions.
    add_calls: list[tuple[int, ...]] = field(default_factory=list)
    step_sizes: list[int] = field(default_factory=list)  # active sequences at each step
    params: dict[int, SamplingParams] = field(default_factory=dict)
    inputs: dict[int, SequenceInput] = field(default_factory=dict)
    removed: list[int] = field(default_factory=list)
    resets: int = 0
    threads: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._seqs: dict[int, _Seq] = {}
        self._gate = threading.Condition()
        self._credits = 0
        self.in_step = threading.Event()  # set while a step is running (or waiting)

    # -- test controls (any thread) ----------------------------------------------------

    def allow(self, steps: int = 1) -> None:
        """Let ``steps`` more steps run (manual_steps mode)."""
        with self._gate:
            self._credits += steps
            self._gate.notify_all()

    def open(self) -> None:
        """Stop gating: every step runs at once from now on."""
        with self._gate:
            self.manual_steps = False
            self._gate.notify_all()

    @property
    def active_ids(self) -> set[int]:
        return set(self._seqs)

    # -- StepBackend ---------------------------------------------------------------------

    @property
    def active(self) -> int:
        return len(self._seqs)

    def add(self, sequences: Sequence[SequenceInput]) -> list[SequenceUpdate]:
        self._note_thread()
        self.add_calls.append(tuple(s.seq_id for s in sequences))
        if len(self._seqs) + len(sequences) > self.max_batch_size:
            raise AssertionError("engine overfilled the batch")
        if self.step_delay:
            time.sleep(self.step_delay)
        if any(self.fail_add(s) for s in sequences):
            raise RuntimeError("fake prefill failure")
        for s in sequences:
            self.params[s.seq_id] = s.params
            self.inputs[s.seq_id] = s
            self._seqs[s.seq_id] = _Seq(s, self.script(s))
        return [self._advance(s.seq_id) for s in sequences]

    def step(self) -> list[SequenceUpdate]:
        self._note_thread()
        self.in_step.set()
        try:
            self._wait_for_gate()
            self.step_sizes.append(len(self._seqs))
            if self.step_delay:
                time.sleep(self.step_delay)
            for seq in self._seqs.values():
                if self.fail_step(seq.input, seq.generated):
                    raise RuntimeError("fake decode failure")
            return [self._advance(seq_id) for seq_id in list(self._seqs)]
        finally:
            self.in_step.clear()

    def remove(self, seq_ids: Iterable[int]) -> None:
        self._note_thread()
        for seq_id in seq_ids:
            self.removed.append(seq_id)
            self._seqs.pop(seq_id, None)

    def reset(self) -> None:
        self._note_thread()
        self.resets += 1
        self._seqs.clear()

    # -- internals -----------------------------------------------------------------------

    def _advance(self, seq_id: int) -> SequenceUpdate:
        seq = self._seqs[seq_id]
        delta = seq.script[seq.generated] if seq.generated < len(seq.script) else ""
        seq.generated += 1
        finished: FinishReason | None = None
        if seq.generated >= seq.input.params.max_new_tokens:
            finished = "length"
        elif seq.generated >= len(seq.script):
            finished = "eos"
        if finished is not None:
            del self._seqs[seq_id]
        return SequenceUpdate(seq_id, delta, seq.generated, finished)

    def _wait_for_gate(self) -> None:
        deadline = time.monotonic() + GATE_TIMEOUT_S
        with self._gate:
            while self.manual_steps and self._credits == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("FakeStepBackend: test never allowed this step")
                self._gate.wait(left)
            if self.manual_steps:
                self._credits -= 1

    def _note_thread(self) -> None:
        self.threads.add(threading.current_thread().name)
