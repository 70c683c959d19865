"""How a member's request becomes model input, and how model output becomes a reply.

Every prompt lives here. Member text is quoted as data, never spliced into the
instructions, and the output is scrubbed of chat-template tokens and instruction
echoes before anyone sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.generation.backend import ChatMessage, SamplingParams

if TYPE_CHECKING:
    from bot.config import Settings


@dataclass(frozen=True, slots=True)
class PoemForm:
    label: str
    # A noun phrase: "Write {request} about {theme}." Small models follow short,
    # plain requests far better than detailed rules (measured on SmolLM2-135M).
    request: str


POEM_FORMS: dict[str, PoemForm] = {
    "free verse": PoemForm("Free verse", "a {length} free verse poem"),
    "haiku": PoemForm("Haiku", "a haiku in three short lines"),
    "tanka": PoemForm("Tanka", "a tanka in five short lines"),
    "limerick": PoemForm("Limerick", "a funny limerick of five rhyming lines"),
    "sonnet": PoemForm("Sonnet", "a sonnet of fourteen rhyming lines"),
    "ballad": PoemForm("Ballad", "a {length} ballad in four-line rhyming stanzas"),
    "ghazal": PoemForm("Ghazal", "a ghazal in couplets that end with the same word"),
}

POEM_LENGTHS: dict[str, float] = {"short": 0.5, "medium": 1.0, "long": 1.6}
"""Multipliers of the configured token budget; fixed forms cap themselves."""

_LENGTH_WORDS = {"short": "short", "medium": "", "long": "long"}
_FIXED_FORM_TOKENS = {"haiku": 48, "tanka": 64, "limerick": 80}

POET_SYSTEM = "You are a poet. Reply with the poem only."

# Template tokens of common chat formats (ChatML, Llama, Gemma, Phi...).
_TEMPLATE_TOKEN = re.compile(
    r"<\|[a-z_]+\|>|<\|im_(start|end)\|>|</?s>|\[/?INST\]|<start_of_turn>|<end_of_turn>"
)
_ROLE_PREFIX = re.compile(r"^\s*(assistant|user|system)\s*[:\n]", re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^\s*(sure[,!.]?|certainly[,!.]?|of course[,!.]?)?\s*"
    r"(here('s| is) (a|an|your|the) [^\n:]{0,80}:)\s*\n",
    re.IGNORECASE,
)


def poem_messages(theme: str, form: str, length: str = "medium") -> tuple[ChatMessage, ...]:
    """Chat messages asking for a poem; ``theme`` is already cleaned member text.

    The theme stays in the user turn, apart from the system instructions.
    """
    request = " ".join(POEM_FORMS[form].request.format(length=_LENGTH_WORDS[length]).split())
    return (
        {"role": "system", "content": POET_SYSTEM},
        {"role": "user", "content": f"Write {request} about {theme}."},
    )


def poem_params(form: str, length: str, budget: int, seed: int | None = None) -> SamplingParams:
    """Sampling settings for a poem: fixed forms get a tight budget of their own."""
    max_tokens = _FIXED_FORM_TOKENS.get(form) or max(32, int(budget * POEM_LENGTHS[length]))
    return SamplingParams(
        max_new_tokens=max_tokens,
        temperature=0.8,
        top_p=0.95,
        top_k=50,
        repetition_penalty=1.15,
        seed=seed,
    )


@dataclass(frozen=True, slots=True)
class Prompt:
    """Model input for one request: what a job is submitted with."""

    messages: tuple[ChatMessage, ...]
    params: SamplingParams


PromptBuilder = Callable[[Mapping[str, Any], "Settings"], Prompt]


def _poem_prompt(inputs: Mapping[str, Any], settings: Settings) -> Prompt:
    form = str(inputs.get("form", "free verse"))
    length = str(inputs.get("length", "medium"))
    return Prompt(
        poem_messages(str(inputs["theme"]), form, length),
        poem_params(form, length, settings.poem_max_new_tokens),
    )


# Keyed by the command name stored with each request. A command registers here so the
# prompt can be rebuilt from the stored inputs alone: the live path and restart
# recovery then submit exactly the same model input.
PROMPT_BUILDERS: dict[str, PromptBuilder] = {"poem": _poem_prompt}


def build_prompt(command: str, inputs: Mapping[str, Any], settings: Settings) -> Prompt:
    """The model input for a stored request; ValueError for an unknown command."""
    builder = PROMPT_BUILDERS.get(command)
    if builder is None:
        raise ValueError(f"no prompt builder for command {command!r}")
    return builder(inputs, settings)


def clean_output(text: str) -> str:
    """Strip template tokens, role prefixes and 'Here is a poem:' preambles."""
    text = _TEMPLATE_TOKEN.sub("", text)
    text = _ROLE_PREFIX.sub("", text, count=1)
    text = _PREAMBLE.sub("", text, count=1)
    lines = [line.rstrip() for line in text.strip().split("\n")]
    # Collapse runs of blank lines: stanzas are separated by exactly one.
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
