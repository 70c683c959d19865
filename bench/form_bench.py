"""Form adherence of /poem: one sample against best-of-N, side by side in one run.

For haiku, limerick and sonnet over a fixed list of themes, each theme is written twice
on the real local model, from the same prompt (``bot.prompts.build_prompt``) and seed:

  single   one candidate (n = 1), as the bot wrote before issue #4
  best     ``Prompt.candidates`` candidates (settings.poem_candidates), the form
           checker's pick (``Prompt.choose``); candidate 0 has the single run's seed

Both kinds are submitted to one engine at once and interleaved by its fair queue, so
they share the machine's load. Every text is scored as the checker sees it:
``bot.forms.check(form, clean_output(text))``. Usage:

    .venv/bin/python bench/form_bench.py [--themes 10] [--candidates 4] [--seed 7]

See bench/README.md for the measured figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import forms
from bot.config import Settings
from bot.generation.engine import Engine, EngineConfig
from bot.generation.jobs import GenerationRequest, Job, JobState
from bot.generation.local_backend import LocalBackend
from bot.generation.model_loader import load_model
from bot.prompts import build_prompt, clean_output

FORMS = ("haiku", "limerick", "sonnet")
THEMES = (
    "rain on a tin roof",
    "the sea at dawn",
    "an old dog asleep by the fire",
    "autumn leaves",
    "a city at midnight",
    "my grandmother's garden",
    "the last train home",
    "snow on the mountains",
    "a cat who steals socks",
    "first love",
)


@dataclass
class Pair:
    """One theme in one form: the single sample and the best-of-N job."""

    form: str
    theme: str
    single: Job
    best: Job


@dataclass
class Tally:
    runs: int = 0
    passed: int = 0
    score: float = 0.0
    tokens: int = 0

    def add(self, report: forms.FormReport, tokens: int) -> None:
        self.runs += 1
        self.passed += report.passes
        self.score += report.score
        self.tokens += tokens

    @property
    def share(self) -> float:
        return self.passed / self.runs if self.runs else 0.0

    @property
    def mean(self) -> float:
        return self.score / self.runs if self.runs else 0.0


def check(form: str, text: str) -> forms.FormReport:
    return forms.check(form, clean_output(text))


def ratio(better: float, base: float) -> str:
    if base == 0:
        return "n/a (single 0)" if better else "n/a"
    return f"{better / base:.2f}x"


async def run(engine: Engine, settings: Settings, themes: tuple[str, ...], seed: int) -> list[Pair]:
    pairs: list[Pair] = []
    for form in FORMS:
        for i, theme in enumerate(themes):
            prompt = build_prompt("poem", {"theme": theme, "form": form}, settings)
            if prompt.candidates < 2 or prompt.choose is None:
                raise SystemExit(f"build_prompt gave {form} no best-of-N; is it a fixed form?")
            # Far apart, so one theme's candidate seeds (seed + index) never meet another's.
            params = dataclasses.replace(prompt.params, seed=seed + 100 * i)
            # Two members of one server: the fair queue alternates single and best-of.
            single = GenerationRequest(prompt.messages, params, guild_id=1, user_id=1)
            best = dataclasses.replace(single, user_id=2, n=prompt.candidates, choose=prompt.choose)
            pairs.append(Pair(form, theme, engine.submit(single), engine.submit(best)))
    await asyncio.gather(*(job.wait() for p in pairs for job in (p.single, p.best)))
    return pairs


def report(pairs: list[Pair], n: int) -> None:
    singles: dict[str, Tally] = {}
    bests: dict[str, Tally] = {}
    oracle: dict[str, Tally] = {}  # the best the chooser could have done
    same_first = 0
    for p in pairs:
        for job in (p.single, p.best):
            if job.state is not JobState.DONE:
                raise SystemExit(f"{p.form} / {p.theme!r}: {job.state.value} {job.error}")
        for key in (p.form, "all"):
            singles.setdefault(key, Tally()).add(
                check(p.form, p.single.text), p.single.generated_tokens
            )
            bests.setdefault(key, Tally()).add(check(p.form, p.best.text), p.best.generated_tokens)
            top = max(
                (check(p.form, text) for text in p.best.candidates),
                key=lambda r: (r.passes, r.score),
            )
            oracle.setdefault(key, Tally()).add(top, 0)
        same_first += p.best.candidates[0] == p.single.text

    head = (
        f"{'form':<9} {'themes':>6}  {'pass n=1':>8}  {f'pass best-of-{n}':>15}  "
        f"{f'any of {n}':>9}  {'score n=1':>9}  {f'score best-of-{n}':>16}  "
        f"{'pass ratio':>14}  {'score ratio':>11}"
    )
    print(head)
    print("-" * len(head))
    for key in (*FORMS, "all"):
        s, b, o = singles[key], bests[key], oracle[key]
        print(
            f"{key:<9} {s.runs:>6}  {s.share:>8.0%}  {b.share:>15.0%}  {o.share:>9.0%}  "
            f"{s.mean:>9.3f}  {b.mean:>16.3f}  {ratio(b.share, s.share):>14}  "
            f"{ratio(b.mean, s.mean):>11}"
        )
    s, b = singles["all"], bests["all"]
    print(
        f"\ntokens generated: n=1 {s.tokens}, best-of-{n} {b.tokens} "
        f"({b.tokens / max(1, s.tokens):.1f}x the cost)"
    )
    print(
        f"candidate 0 of best-of-{n} equals the single sample (same seed) in "
        f"{same_first} of {len(pairs)}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--themes", type=int, default=len(THEMES), help="how many themes")
    parser.add_argument("--candidates", type=int, default=None, help="N (poem_candidates)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32, help="engine max_batch_size")
    parser.add_argument("--data-dir", default=None, help="where the converted model is cached")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # float32 as the model tests use: bfloat16 results shift slightly with batch shape,
    # and candidate 0 should match the single sample of the same seed.
    overrides: dict[str, Any] = {"dtype": "float32"}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if args.candidates:
        overrides["poem_candidates"] = args.candidates
    settings = Settings(**overrides)
    themes = THEMES[: max(1, min(args.themes, len(THEMES)))]

    t0 = time.perf_counter()
    lm = load_model(settings)
    print(
        f"model {lm.source} ({str(lm.dtype).removeprefix('torch.')}, {lm.device}, "
        f"{torch.get_num_threads()} threads) loaded in {time.perf_counter() - t0:.1f} s; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    batch = max(args.batch, settings.poem_candidates)
    many = 100_000  # the bench is one member queueing everything at once
    engine = Engine(
        LocalBackend(lm, max_batch_size=batch),
        EngineConfig(
            max_batch_size=batch,
            queue_limit=many,
            guild_queue_limit=many,
            member_inflight_limit=many,
            job_timeout_s=3600.0,
        ),
    )
    await engine.start()
    t1 = time.perf_counter()
    try:
        pairs = await run(engine, settings, themes, args.seed)
    finally:
        await engine.close()
    print(
        f"{len(themes)} themes x {len(FORMS)} forms, n=1 and best-of-"
        f"{settings.poem_candidates}, written in {time.perf_counter() - t1:.0f} s "
        f"(load average now {os.getloadavg()[0]:.2f})\n"
    )
    report(pairs, settings.poem_candidates)


if __name__ == "__main__":
    asyncio.run(main())
