"""Throughput and latency of poem requests three ways, side by side in one run.

(a) seed   the seed article's path: one ``model.generate`` per request, in turn
(b) static one left-padded batch through ``model.generate``
(c) engine ``Engine`` + ``LocalBackend``: continuous batching, streaming

plus the forward-only ceiling at the same batch size (the same prompts prefilled, then
one model forward per token with a cache and no sampling). Usage:

    .venv/bin/python bench/engine_bench.py [--sizes 1,8,32] [--new-tokens 64] [--quick]

See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import Settings
from bot.generation.backend import ChatMessage, SamplingParams
from bot.generation.engine import Engine, EngineConfig, LocalWorker
from bot.generation.jobs import GenerationRequest
from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import LoadedModel, load_model
from bot.prompts import poem_messages

log = logging.getLogger("bench")

# Long forms (rarely finished before the budget) and themes of very different lengths,
# so prompts are mixed in length as they are in a busy server.
FORMS = ["free verse", "sonnet", "ballad", "ghazal"]
THEMES = [
    "rain",
    "the sea at night",
    "a lighthouse keeper who waits for a ship that never comes",
    "autumn",
    "my grandmother's kitchen on a winter morning, the radio on, bread rising",
    "city lights",
    "the last train home after a long day, half asleep, watching the stations pass by",
    "moss on old stones",
]


def requests(n: int) -> list[tuple[ChatMessage, ...]]:
    return [poem_messages(THEMES[i % len(THEMES)], FORMS[i % len(FORMS)]) for i in range(n)]


def rss_mb() -> float:
    """Current resident set size (Linux); the process-wide peak elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Result:
    name: str
    tokens: int
    wall_s: float
    latencies: list[float]
    ttfts: list[float] = field(default_factory=list)
    loop_lag_ms: float = 0.0
    peak_rss_mb: float = 0.0
    note: str = ""

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def observed(run: Callable[[], Awaitable[Result]]) -> Result:
    """Run ``run`` while a heartbeat measures the event loop's lag and the RSS."""
    worst = 0.0
    peak = rss_mb()
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal worst, peak
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.010)
            worst = max(worst, time.perf_counter() - before - 0.010)
            peak = max(peak, rss_mb())

    beat = asyncio.create_task(heartbeat())
    try:
        result = await run()
    finally:
        stop.set()
        await beat
    result.loop_lag_ms = worst * 1000
    result.peak_rss_mb = peak
    return result


# -- (a) and (b): transformers' generate -----------------------------------------------


def _generate_kwargs(params: SamplingParams) -> dict[str, Any]:
    return {
        "do_sample": params.temperature > 0,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "repetition_penalty": params.repetition_penalty,
        "max_new_tokens": params.max_new_tokens,
    }


def _encode(lm: LoadedModel, batch: list[tuple[ChatMessage, ...]]) -> Any:
    tok = lm.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts = [
        tok.apply_chat_template([dict(m) for m in msgs], add_generation_prompt=True, tokenize=False)
        for msgs in batch
    ]
    return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)


def _new_tokens(lm: LoadedModel, out: torch.Tensor, prompt_len: int) -> int:
    """Generated tokens per row up to and including its first eos."""
    eos = lm.model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    total = 0
    for row in out[:, prompt_len:].tolist():
        count = 0
        for token in row:
            count += 1
            if token in eos_ids:
                break
        total += count
    return total


@torch.inference_mode()
def _generate(lm: LoadedModel, batch: list[tuple[ChatMessage, ...]], p: SamplingParams) -> int:
    enc = _encode(lm, batch)
    out = lm.model.generate(**enc, **_generate_kwargs(p), pad_token_id=lm.tokenizer.pad_token_id)
    return _new_tokens(lm, out, enc.input_ids.shape[1])


async def seed_path(
    lm: LoadedModel, batch: list[tuple[ChatMessage, ...]], p: SamplingParams, sample: int
) -> Result:
    """One generate per request in turn; only ``sample`` of them run, the rest are
    extrapolated from their average (each request costs the same on this path)."""
    ran = batch[:sample]
    started = time.perf_counter()
    tokens, durations = 0, []
    for msgs in ran:
        t0 = time.perf_counter()
        tokens += await asyncio.to_thread(_generate, lm, [msgs], p)
        durations.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    mean = wall / len(ran)
    # Request i waits for the i requests before it: its latency is (i + 1) x mean.
    latencies = [(i + 1) * mean for i in range(len(batch))]
    note = f"ran {len(ran)} of {len(batch)}, extrapolated" if len(ran) < len(batch) else ""
    scale = len(batch) / len(ran)
    return Result("seed", round(tokens * scale), wall * scale, latencies, note=note)


async def static_batch(
    lm: LoadedModel, batch: list[tuple[ChatMessage, ...]], p: SamplingParams
) -> Result:
    started = time.perf_counter()
    tokens = await asyncio.to_thread(_generate, lm, batch, p)
    wall = time.perf_counter() - started
    return Result("static", tokens, wall, [wall] * len(batch), note="no streaming")


# -- (c): the engine --------------------------------------------------------------------


async def engine_run(
    lm: LoadedModel,
    batch: list[tuple[ChatMessage, ...]],
    p: SamplingParams,
    join_chunk: int | None = None,
    name: str = "engine",
) -> Result:
    """``join_chunk``: how many sequences may join per step (None: the worker's default,
    the whole burst at once)."""
    n = len(batch)
    backend = LocalBackend(lm, max_batch_size=max(n, 1))
    config = EngineConfig(
        queue_limit=max(n, 1) * 2,
        guild_queue_limit=max(n, 1) * 2,
        member_inflight_limit=2,
        job_timeout_s=3600,
        max_batch_size=n,
    )
    if join_chunk is None:
        engine = Engine(backend, config)
    else:
        worker = LocalWorker(backend, config.max_batch_size, join_chunk=join_chunk)
        engine = Engine.with_worker(worker, config)
    await engine.start()
    try:
        started = time.perf_counter()
        jobs = [
            engine.submit(GenerationRequest(messages=m, params=p, guild_id=1, user_id=i))
            for i, m in enumerate(batch)
        ]
        for job in jobs:
            await job.wait()
        wall = time.perf_counter() - started
    finally:
        await engine.close()
    failed = [job for job in jobs if job.error]
    if failed:
        raise RuntimeError(f"{len(failed)} engine jobs failed: {failed[0].error}")
    latencies, ttfts = [], []
    for job in jobs:
        t = job.timings
        if t.finished_at is not None:
            latencies.append(t.finished_at - t.submitted_at)
        if t.first_token_at is not None:
            ttfts.append(t.first_token_at - t.submitted_at)
    tokens = sum(job.generated_tokens for job in jobs)
    return Result(name, tokens, wall, latencies, ttfts)


# -- the ceiling ------------------------------------------------------------------------


@torch.inference_mode()
def ceiling(
    lm: LoadedModel, batch: list[tuple[ChatMessage, ...]], steps: int
) -> tuple[float, float]:
    """Seconds to prefill ``batch`` and to run ``steps`` bare decode forwards on it."""
    enc = _encode(lm, batch)
    mask = enc.attention_mask
    positions = (mask.cumsum(1) - 1).clamp_min(0)
    cache = DynamicCache(config=lm.model.config)
    t0 = time.perf_counter()
    out = lm.model(
        input_ids=enc.input_ids,
        attention_mask=mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    position = positions[:, -1:]
    t1 = time.perf_counter()
    for _ in range(steps):
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        position = position + 1
        lm.model(
            input_ids=token,
            attention_mask=mask,
            position_ids=position,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return t1 - t0, time.perf_counter() - t1


# -- the report -------------------------------------------------------------------------


def show(result: Result, n: int) -> None:
    ttft = (
        f"{pct(result.ttfts, 0.5):5.2f}/{pct(result.ttfts, 0.95):5.2f}"
        if result.ttfts
        else "    n/a    "
    )
    print(
        f"  {result.name:<7}{result.tok_s:8.1f} tok/s {result.tokens:6d} tok {result.wall_s:7.2f} s"
        f"  lat p50/p95 {pct(result.latencies, 0.5):6.2f}/{pct(result.latencies, 0.95):6.2f} s"
        f"  ttft p50/p95 {ttft} s  loop lag {result.loop_lag_ms:7.1f} ms"
        f"  rss {result.peak_rss_mb:5.0f} MB  {result.note}"
    )


async def bench_size(lm: LoadedModel, n: int, new_tokens: int, seed_sample: int) -> None:
    batch = requests(n)
    params = SamplingParams(max_new_tokens=new_tokens)
    prefill_s, decode_s = ceiling(lm, batch, new_tokens)
    full = n * new_tokens / (prefill_s + decode_s)
    decode_only = n * new_tokens / decode_s
    print(f"\nN={n} concurrent, {new_tokens} new tokens, mixed prompt lengths")
    print(
        f"  ceiling {full:8.1f} tok/s (prefill {prefill_s:.2f} s + {new_tokens} forwards "
        f"{decode_s:.2f} s; decode alone {decode_only:.1f} tok/s)"
    )
    engine = await observed(lambda: engine_run(lm, batch, params))
    chunked = await observed(lambda: engine_run(lm, batch, params, join_chunk=8, name="join8"))
    static = await observed(lambda: static_batch(lm, batch, params))
    seed = await observed(lambda: seed_path(lm, batch, params, min(n, seed_sample)))
    for result in (engine, chunked, static, seed):
        show(result, n)
    print(
        f"  engine/seed {engine.tok_s / seed.tok_s:5.1f}x   engine/static "
        f"{engine.tok_s / static.tok_s:4.2f}x   engine/ceiling {engine.tok_s / full:4.2f}"
        f"   engine/decode-alone {engine.tok_s / decode_only:4.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,32", help="concurrent requests, comma-separated")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="sizes 1,8, 32 new tokens")
    parser.add_argument("--seed-sample", type=int, default=4, help="seed-path requests to run")
    parser.add_argument("--data-dir", default=None, help="where the converted model is cached")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    new_tokens = args.new_tokens
    if args.quick:
        sizes, new_tokens, args.seed_sample = [1, 8], 32, 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"dtype": args.dtype}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    t0 = time.perf_counter()
    lm = load_model(Settings(**overrides))
    print(
        f"model {lm.source} ({str(lm.dtype).removeprefix('torch.')}, {lm.device}, "
        f"{torch.get_num_threads()} threads, {lm.model.config._attn_implementation}) "
        f"loaded in {time.perf_counter() - t0:.1f} s; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    # Warm every path once so the first measured run pays no one-off costs.
    warm = requests(2)
    await engine_run(lm, warm, SamplingParams(max_new_tokens=4))
    _generate(lm, warm, SamplingParams(max_new_tokens=4))
    for n in sizes:
        await bench_size(lm, n, new_tokens, args.seed_sample)
    print(f"\nload average now {os.getloadavg()[0]:.2f} (other processes share these CPUs)")


if __name__ == "__main__":
    asyncio.run(main())
