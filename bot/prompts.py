"""How a member's request becomes model input, and how model output becomes a reply.

Every prompt lives here. Member text and moderator-written style text are quoted as
data in the user turn, never spliced into the system instructions; anything in them
that looks like a chat-template token or like our quote delimiter is defused first.
The output is scrubbed of template tokens and instruction echoes before anyone sees it.

The default model (SmolLM2-135M-Instruct) follows short, plain requests far better
than detailed rules, so every request is one or two plain sentences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot import forms
from bot.domain import Style
from bot.generation.backend import ChatMessage, SamplingParams
from bot.text import normalize

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = [
    "CRITIQUE_FOCUSES",
    "CRITIQUE_TONES",
    "DEFAULTS",
    "FIXED_FORMS",
    "LANGUAGES",
    "POEM_FORMS",
    "POEM_LENGTHS",
    "PROMPT_BUILDERS",
    "QUOTE",
    "SCRIPT_EXAMPLE",
    "SCRIPT_GENRES",
    "SCRIPT_LENGTHS",
    "WILDNESS",
    "WORKED_EXAMPLES",
    "FormChooser",
    "PoemForm",
    "Prompt",
    "PromptContext",
    "build_prompt",
    "clean_output",
    "defuse",
    "poem_messages",
    "poem_params",
    "quote",
    "trim_unfinished",
]

# --------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class PoemForm:
    label: str
    # A noun phrase: "Write {request} about {theme}." Small models follow short,
    # plain requests far better than detailed rules (measured on SmolLM2-135M).
    request: str
    # What a Continue asks for: "Write {more} ..." (a whole new verse for fixed forms,
    # so the form checker can still pick among candidates).
    more: str = "a few more lines in the same style"


POEM_FORMS: dict[str, PoemForm] = {
    "free verse": PoemForm("Free verse", "a {length} free verse poem"),
    "haiku": PoemForm(
        "Haiku", "a haiku in three short lines", "one more haiku in three short lines"
    ),
    "tanka": PoemForm("Tanka", "a tanka in five short lines", "one more tanka in five short lines"),
    "limerick": PoemForm(
        "Limerick",
        "a funny limerick of five rhyming lines",
        "one more funny limerick of five rhyming lines",
    ),
    "sonnet": PoemForm(
        "Sonnet", "a sonnet of fourteen rhyming lines", "one more sonnet of fourteen rhyming lines"
    ),
    "ballad": PoemForm(
        "Ballad",
        "a {length} ballad in four-line rhyming stanzas",
        "two more four-line rhyming stanzas",
    ),
    "ghazal": PoemForm(
        "Ghazal",
        "a ghazal in couplets that end with the same word",
        "three more couplets that end with the same word",
    ),
    # Free forms: no checker, one sample. Chosen because a small model writes them
    # well and members ask for them; forms it cannot keep (villanelle, sestina,
    # acrostic) would only disappoint.
    "ode": PoemForm("Ode", "a {length} ode"),
    "elegy": PoemForm("Elegy", "a {length} elegy"),
    "prose poem": PoemForm("Prose poem", "a {length} prose poem in one paragraph"),
}

FIXED_FORMS: frozenset[str] = frozenset(forms.FORM_SPECS) - {"free verse"}
"""Forms the checker can judge: these sample several candidates and send the best."""

POEM_LENGTHS: dict[str, float] = {"short": 0.5, "medium": 1.0, "long": 1.6}
"""Multipliers of the configured token budget; fixed forms cap themselves."""

LANGUAGES: dict[str, str] = {
    "auto": "Same as the theme",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "ru": "Russian",
    "tr": "Turkish",
    "ja": "Japanese",
    "zh": "Chinese",
    "ko": "Korean",
    "ar": "Arabic",
    "hi": "Hindi",
}
"""Poem language choices, code -> name; "auto" follows the language of the theme."""

WILDNESS: dict[str, float] = {"calm": 0.6, "balanced": 0.8, "wild": 1.05}
"""How adventurous the sampling is: name -> temperature."""

SCRIPT_GENRES: dict[str, str] = {
    "drama": "drama",
    "comedy": "comedy",
    "romance": "romance",
    "thriller": "thriller",
    "horror": "horror",
    "mystery": "mystery",
    "science fiction": "science fiction",
    "fantasy": "fantasy",
    "western": "western",
    "noir": "film noir",
    "family": "family",
}
"""Script genre choices: key -> how the request names it."""

SCRIPT_LENGTHS: dict[str, float] = {"short": 0.6, "medium": 1.0, "long": 1.5}
"""Multipliers of ``settings.script_max_new_tokens``."""

CRITIQUE_FOCUSES: dict[str, str] = {
    "overall": "the piece as a whole",
    "imagery": "its imagery",
    "rhythm": "its rhythm and sound",
    "structure": "its structure",
    "dialogue": "its dialogue",
    "pacing": "its pacing",
}
"""Critique focus choices: key -> what the feedback is asked to look at."""

CRITIQUE_TONES: dict[str, str] = {
    "gentle": "Be warm and encouraging.",
    "direct": "Be direct and honest.",
}
"""Critique tone choices: key -> the sentence that sets it."""

DEFAULTS: dict[str, str] = {
    "form": "free verse",
    "length": "medium",
    "language": "auto",
    "wildness": "balanced",
    "genre": "drama",
    "focus": "overall",
    "tone": "gentle",
}
"""What a missing option means (stored inputs from before an option existed have none)."""

# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class PromptContext:
    """What a request is written with besides its own inputs."""

    style: Style | None = None  # resolved by the StyleService
    examples: tuple[str, ...] = ()  # community taste: favourite outputs, best first


@dataclass(frozen=True, slots=True)
class FormChooser:
    """Picks the candidate that fits a form best (a value, so prompts compare equal).

    For a Continue, ``previous`` is the text being continued: a candidate that mostly
    repeats it would fit the form perfectly and add nothing, so it ranks last.
    """

    form: str
    previous: str = ""

    def __call__(self, texts: Sequence[str]) -> int:
        seen = {_line_key(line) for line in self.previous.splitlines()} - {""}

        def rank(i: int) -> tuple[bool, bool, float]:
            text = clean_output(texts[i])
            lines = [key for key in map(_line_key, text.splitlines()) if key]
            repeats = bool(lines) and sum(key in seen for key in lines) * 2 >= len(lines)
            report = forms.check(self.form, text)
            return (not repeats, report.passes, report.score)

        # max() keeps the first of equals: ties go to the earlier candidate.
        return max(range(len(texts)), key=rank, default=0)


def _line_key(line: str) -> str:
    return " ".join(re.findall(r"\w+", line.casefold()))


@dataclass(frozen=True, slots=True)
class Prompt:
    """Model input for one request: what a job is submitted with."""

    messages: tuple[ChatMessage, ...]
    params: SamplingParams
    candidates: int = 1  # > 1 for fixed poem forms (best-of-N)
    choose: Callable[[Sequence[str]], int] | None = None  # the form checker's pick


PromptBuilder = Callable[[Mapping[str, Any], "Settings", PromptContext], Prompt]

# --------------------------------------------------------------------------- quoting

QUOTE = '"""'
"""Delimits data (member text, style text, examples) inside a user turn."""

# Template tokens of common chat formats (ChatML, Llama, Gemma, Phi...).
_TEMPLATE_TOKEN = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|</?s>|\[/?INST\]|<</?SYS>>|<start_of_turn>|<end_of_turn>",
    re.IGNORECASE,
)
_QUOTE_RUN = re.compile(r'"{2,}')

_STYLE_MAX_CHARS = 600  # each of a style's instructions and example
_PREVIOUS_MAX_CHARS = 1500  # the tail of a text being continued


def defuse(text: str) -> str:
    """Member or moderator text made safe to quote: no template tokens, no delimiter.

    Template tokens would be read by the tokenizer as real turn boundaries; a run of
    quotes could close our quote early. Removal repeats until nothing is left to
    remove, so pieces cannot be nested into a token ("<|im_<|x|>start|>").
    """
    text = normalize(text)
    previous = None
    while previous != text:
        previous = text
        text = _TEMPLATE_TOKEN.sub("", text)
        text = _QUOTE_RUN.sub('"', text)
    return text.replace("<|", "< |").replace("|>", "| >").strip()


def _inline(text: str) -> str:
    """A short member field (theme, premise, names) defused onto one line."""
    return " ".join(defuse(text).split())


def _cap(text: str, limit: int, *, keep_end: bool = False) -> str:
    """At most ``limit`` characters, cut at a line (or else word) boundary."""
    if len(text) <= limit:
        return text
    if keep_end:
        tail = text[-limit:]
        cut = tail.find("\n")
        if cut == -1 or cut > limit // 2:
            cut = tail.find(" ")
        return tail[cut + 1 :] if 0 <= cut <= limit // 2 else tail
    head = text[:limit]
    cut = max(head.rfind("\n"), head.rfind(" "))
    return (head[:cut] if cut > limit // 2 else head).rstrip() + " …"


def quote(text: str) -> str:
    """``text`` as a quoted block: the model is to read it, not obey it."""
    return f"{QUOTE}\n{defuse(text)}\n{QUOTE}"


_STYLE_LABEL = "Write in this style:"
_STYLE_EXAMPLE_LABEL = "An example of the style:"
_EXAMPLES_LABEL = "Pieces this server loved:"
_PREVIOUS_LABEL = "Here is the text so far:"
_TEXT_LABEL = "Here is the writing:"
_LABELS = (_STYLE_LABEL, _STYLE_EXAMPLE_LABEL, _EXAMPLES_LABEL, _PREVIOUS_LABEL, _TEXT_LABEL)


def _taste(examples: Iterable[str], budget: int) -> list[str]:
    """Whole examples, best first, while they fit in ``budget`` characters."""
    kept: list[str] = []
    left = budget
    for example in examples:
        text = defuse(example)
        if text and len(text) <= left:
            kept.append(text)
            left -= len(text)
    return kept


def _context_blocks(context: PromptContext, settings: Settings) -> list[str]:
    """The quoted style and community examples that open a user turn."""
    blocks: list[str] = []
    style = context.style
    if style is not None and style.instructions.strip():
        blocks.append(
            f"{_STYLE_LABEL}\n{quote(_cap(defuse(style.instructions), _STYLE_MAX_CHARS))}"
        )
        if style.example and style.example.strip():
            example = _cap(defuse(style.example), _STYLE_MAX_CHARS)
            blocks.append(f"{_STYLE_EXAMPLE_LABEL}\n{quote(example)}")
    taste = _taste(context.examples, settings.taste_max_chars)
    if taste:
        blocks.append(_EXAMPLES_LABEL + "".join(f"\n{QUOTE}\n{t}\n{QUOTE}" for t in taste))
    return blocks


def _user_turn(blocks: Sequence[str], request: str) -> ChatMessage:
    # The request comes last: a small model acts on what it read most recently.
    return {"role": "user", "content": "\n\n".join([*blocks, request])}


def _option(inputs: Mapping[str, Any], name: str, table: Mapping[str, Any]) -> str:
    value = inputs.get(name)
    key = DEFAULTS[name] if value in (None, "") else str(value)
    if key not in table:
        raise ValueError(f"unknown {name} {key!r}")
    return key


def _required(inputs: Mapping[str, Any], name: str, command: str) -> str:
    value = inputs.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{command} inputs need a {name}")
    return value


# --------------------------------------------------------------------------- poem

POET_SYSTEM = "You are a poet. Reply with the poem only."

_LENGTH_WORDS = {"short": "short", "medium": "", "long": "long"}
_FIXED_FORM_TOKENS = {"haiku": 48, "tanka": 64, "limerick": 80, "sonnet": 200}

# Worked examples, shown as earlier exchanges: the model copies the shape of an answer
# better than it follows a description of it. Measured on SmolLM2-135M (10 themes, 4
# samples each, mean checker score without -> with): haiku 0.19 -> 0.45 with one
# example, 0.54 with three; tanka 0.25 -> 0.32; limerick 0.21 -> 0.31; sonnet
# 0.16 -> 0.23; ghazal 0.30 -> 0.46. A ballad example did not help (0.29 -> 0.28) and
# costs ~70 prompt tokens, so ballads get none. Each example passes bot.forms.check
# (tested). Written for this project.
WORKED_EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "haiku": (
        (
            "the sea",
            "Grey waves fold and break\nthe gulls hang still in the wind\nsalt dries on my hands",
        ),
        (
            "a candle",
            "A small flame leans left\nwax runs down to meet the dish\nthe dark waits outside",
        ),
        (
            "a winter morning",
            "Frost on the window\nmy breath draws a little cloud\nthe kettle wakes up",
        ),
    ),
    "tanka": (
        (
            "the sea",
            "Grey waves fold and break\nthe gulls hang still in the wind\nsalt dries on my hands\n"
            "I walk home along the shore\nwith the whole sea in my hair",
        ),
    ),
    "limerick": (
        (
            "the sea",
            "A sailor who sailed on the sea\nonce tried to go fishing for tea;\n"
            "he cast out his net\nand got terribly wet,\nand called it a fine jamboree.",
        ),
    ),
    "sonnet": (
        (
            "the sea",
            "The tide comes in as quiet as a thought\nand fills the little hollows in the sand;\n"
            "it gives back every shell the winter caught\nlike coins returned into an open hand.\n"
            "The gulls above it argue with the air,\nthe boats lean on their moorings in the bay,\n"
            "the wind goes combing through the harbour's hair\n"
            "and carries all the smell of salt away.\n"
            "I stood here as a child and watched it turn;\n"
            "I stand here now with older, slower feet.\n"
            "The sea has nothing new for me to learn,\n"
            "and still each wave arrives as if we meet.\n"
            "So let the water come and let it go:\nit knows the way that I will never know.",
        ),
    ),
    "ghazal": (
        (
            "the sea",
            "The lamps along the harbour burn for you tonight;\n"
            "the boats come home, but none of them are new tonight.\n\n"
            "I count the windows lit across the sleeping town,\n"
            "and every one is waiting, patient, true, tonight.\n\n"
            "The sea repeats your name the way a prayer is said;\n"
            "I say it back: the only thing I do tonight.",
        ),
    ),
}

_NON_ASCII_LETTER = re.compile(r"[^\W\d_a-zA-Z]")


def _request_phrase(form: str, length: str) -> str:
    return " ".join(POEM_FORMS[form].request.format(length=_LENGTH_WORDS[length]).split())


def _language_clause(language: str, theme: str) -> str:
    """', in French' or, for "auto", a nudge only when the theme is not plain ASCII.

    An English theme needs no instruction (the model writes English), and every extra
    clause costs a small model some of its attention to the form.
    """
    if language == "auto":
        return ", in the same language as the theme" if _NON_ASCII_LETTER.search(theme) else ""
    return f", in {LANGUAGES[language]}"


def poem_messages(theme: str, form: str, length: str = "medium") -> tuple[ChatMessage, ...]:
    """Chat messages asking for a poem; ``theme`` is already cleaned member text.

    The plain request with no example, style or options: the theme stays in the user
    turn, apart from the system instructions.
    """
    return (
        {"role": "system", "content": POET_SYSTEM},
        {"role": "user", "content": f"Write {_request_phrase(form, length)} about {theme}."},
    )


# Measured on SmolLM2-135M (10 themes, 4 samples each): the penalty also falls on the
# newline token, so 1.15 pushed poems into prose (free verse passed the checker 5/20,
# limerick scored 0.16); 1.0 let a third of the lines loop; 1.05 kept lines short and
# distinct (free verse 9/20, limerick 0.30, about 1% repeated lines).
_POEM_REPETITION_PENALTY = 1.05
# A haiku, tanka or limerick is one stanza: a blank line means the poem is over and
# the model is rambling on (measured: stopping there raised the haiku score 0.41 -> 0.46).
_ONE_STANZA_FORMS = frozenset({"haiku", "tanka", "limerick"})


def poem_params(
    form: str,
    length: str,
    budget: int,
    seed: int | None = None,
    temperature: float = WILDNESS["balanced"],
) -> SamplingParams:
    """Sampling settings for a poem: fixed forms get a tight budget of their own."""
    max_tokens = _FIXED_FORM_TOKENS.get(form) or max(32, int(budget * POEM_LENGTHS[length]))
    return SamplingParams(
        max_new_tokens=max_tokens,
        temperature=temperature,
        top_p=0.95,
        top_k=50,
        repetition_penalty=_POEM_REPETITION_PENALTY,
        stop=("\n\n",) if form in _ONE_STANZA_FORMS else (),
        seed=seed,
    )


def _worked_examples(form: str, length: str) -> tuple[ChatMessage, ...]:
    messages: list[ChatMessage] = []
    for theme, poem in WORKED_EXAMPLES.get(form, ()):
        messages.append(
            {"role": "user", "content": f"Write {_request_phrase(form, length)} about {theme}."}
        )
        messages.append({"role": "assistant", "content": poem})
    return tuple(messages)


def _poem_prompt(inputs: Mapping[str, Any], settings: Settings, context: PromptContext) -> Prompt:
    theme = _inline(_required(inputs, "theme", "poem"))
    form = _option(inputs, "form", POEM_FORMS)
    length = _option(inputs, "length", POEM_LENGTHS)
    language = _option(inputs, "language", LANGUAGES)
    wildness = _option(inputs, "wildness", WILDNESS)
    blocks = _context_blocks(context, settings)
    clause = _language_clause(language, theme)
    previous = inputs.get("previous")
    if isinstance(previous, str) and previous.strip():
        text = _cap(defuse(previous), _PREVIOUS_MAX_CHARS, keep_end=True)
        blocks.append(f"{_PREVIOUS_LABEL}\n{QUOTE}\n{text}\n{QUOTE}")
        request = (
            f"This is {_request_phrase(form, length)} about {theme}. "
            f"Write {POEM_FORMS[form].more} that continue it{clause}. "
            "Reply with the new lines only."
        )
    else:
        request = f"Write {_request_phrase(form, length)} about {theme}{clause}."
    fixed = form in FIXED_FORMS
    messages = (
        {"role": "system", "content": POET_SYSTEM},
        *_worked_examples(form, length),
        _user_turn(blocks, request),
    )
    params = poem_params(form, length, settings.poem_max_new_tokens, temperature=WILDNESS[wildness])
    if fixed and settings.poem_candidates > 1:
        chooser = FormChooser(form, previous if isinstance(previous, str) else "")
        return Prompt(messages, params, settings.poem_candidates, chooser)
    return Prompt(messages, params)


# --------------------------------------------------------------------------- script

SCREENWRITER_SYSTEM = "You are a screenwriter. Reply with the scene only, in screenplay format."
_SCRIPT_FORMAT = (
    "Start with a scene heading like INT. KITCHEN - NIGHT. "
    "Put each speaker's name in capitals on its own line, with their words below."
)


def _scene_request(genre: str, length: str, details: Sequence[str]) -> str:
    size = {"short": "short ", "medium": "", "long": "long "}[length]
    head = f"Write a {size}{SCRIPT_GENRES[genre]} scene as a screenplay."
    return "\n".join([head, *details, _SCRIPT_FORMAT])


# A worked scene, shown as an earlier exchange (written for this project). Measured on
# SmolLM2-135M, 6 premises x 2 seeds: without it the model wrote prose stories (a scene
# heading 4/12, two or more speaker cues after to_fountain 2/12); with it 12/12 and
# 7/12. A repetition penalty of 1.1 instead of 1.05 cost cues (4/12): names repeat.
_SCRIPT_EXAMPLE_REQUEST = _scene_request(
    "comedy",
    "short",
    [
        "Premise: a cat refuses to leave the bed",
        "Characters: Ada, Ben",
        "Setting: a bedroom in the morning",
    ],
)
SCRIPT_EXAMPLE = """INT. BEDROOM - MORNING

Sunlight on a rumpled bed. A fat grey cat sleeps across both pillows.

ADA
Ben. The cat is in my spot again.

BEN
(yawning)
Then it is the cat's spot now.

Ada pokes the cat. It stretches and takes up even more room.

ADA
I am buying a bigger bed."""


def _script_prompt(inputs: Mapping[str, Any], settings: Settings, context: PromptContext) -> Prompt:
    premise = _inline(_required(inputs, "premise", "script"))
    genre = _option(inputs, "genre", SCRIPT_GENRES)
    length = _option(inputs, "length", SCRIPT_LENGTHS)
    details = [f"Premise: {premise}"]
    for field in ("characters", "setting"):
        value = inputs.get(field)
        if isinstance(value, str) and value.strip():
            details.append(f"{field.title()}: {_inline(value)}")
    blocks = _context_blocks(context, settings)
    previous = inputs.get("previous")
    if isinstance(previous, str) and previous.strip():
        text = _cap(defuse(previous), _PREVIOUS_MAX_CHARS, keep_end=True)
        blocks.append(f"{_PREVIOUS_LABEL}\n{QUOTE}\n{text}\n{QUOTE}")
        request = (
            f"Continue this {SCRIPT_GENRES[genre]} scene in the same screenplay format. "
            "Reply with the new part only."
        )
    else:
        request = _scene_request(genre, length, details)
    params = SamplingParams(
        max_new_tokens=min(
            2048, max(64, int(settings.script_max_new_tokens * SCRIPT_LENGTHS[length]))
        ),
        temperature=0.8,
        top_p=0.95,
        top_k=50,
        repetition_penalty=1.05,
    )
    messages = (
        {"role": "system", "content": SCREENWRITER_SYSTEM},
        {"role": "user", "content": _SCRIPT_EXAMPLE_REQUEST},
        {"role": "assistant", "content": SCRIPT_EXAMPLE},
        _user_turn(blocks, request),
    )
    return Prompt(messages, params)


# --------------------------------------------------------------------------- critique

CRITIC_SYSTEM = "You are a writing teacher who gives useful feedback."


def _critique_prompt(
    inputs: Mapping[str, Any], settings: Settings, context: PromptContext
) -> Prompt:
    text = _cap(defuse(_required(inputs, "text", "critique")), settings.critique_max_chars)
    focus = _option(inputs, "focus", CRITIQUE_FOCUSES)
    tone = _option(inputs, "tone", CRITIQUE_TONES)
    blocks = _context_blocks(PromptContext(style=context.style), settings)
    blocks.append(f"{_TEXT_LABEL}\n{QUOTE}\n{text}\n{QUOTE}")
    request = (
        f"Give feedback on {CRITIQUE_FOCUSES[focus]}. {CRITIQUE_TONES[tone]} "
        "Name its strengths, then give concrete suggestions, "
        "and end with one of its lines reworked as an example."
    )
    params = SamplingParams(
        max_new_tokens=settings.critique_max_new_tokens,
        temperature=0.7,
        top_p=0.95,
        top_k=50,
        repetition_penalty=1.1,
    )
    messages = ({"role": "system", "content": CRITIC_SYSTEM}, _user_turn(blocks, request))
    return Prompt(messages, params)


# --------------------------------------------------------------------------- registry

# Keyed by the command name stored with each request. A command registers here so the
# prompt can be rebuilt from the stored inputs alone: the live path and restart
# recovery then submit exactly the same model input.
PROMPT_BUILDERS: dict[str, PromptBuilder] = {
    "poem": _poem_prompt,
    "script": _script_prompt,
    "critique": _critique_prompt,
}


def build_prompt(
    command: str,
    inputs: Mapping[str, Any],
    settings: Settings,
    context: PromptContext = PromptContext(),  # frozen: one shared default is safe
) -> Prompt:
    """The model input for a stored request; ValueError for an unknown command or option."""
    builder = PROMPT_BUILDERS.get(command)
    if builder is None:
        raise ValueError(f"no prompt builder for command {command!r}")
    return builder(inputs, settings, context)


# --------------------------------------------------------------------------- output

_ROLE_PREFIX = re.compile(r"^\s*(assistant|user|system)\s*[:\n]", re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^\s*(sure[,!.]?|certainly[,!.]?|of course[,!.]?)?\s*"
    r"(here('s| is) (a|an|your|the) [^\n:]{0,80}:)\s*\n",
    re.IGNORECASE,
)
# A first line that repeats our request ("Write a haiku ... about rain.").
_REQUEST_ECHO = re.compile(
    r"^\s*(please\s+)?(write|continue|give feedback)\b[^\n]{0,300}?"
    r"\b(about|continues?|screenplay|feedback|scene)\b[^\n]*[.:]\s*$",
    re.IGNORECASE,
)
_ECHO_LINES = frozenset(
    line.casefold()
    for line in (
        *_LABELS,
        QUOTE,
        POET_SYSTEM,
        SCREENWRITER_SYSTEM,
        CRITIC_SYSTEM,
        _SCRIPT_FORMAT,
        "Reply with the poem only.",
        "Reply with the new lines only.",
        "Reply with the new part only.",
    )
)


def _is_echo(line: str) -> bool:
    stripped = line.strip().strip("*_#> ").strip()
    return stripped.casefold() in _ECHO_LINES or bool(re.fullmatch(r'"{3,}|`{3,}', stripped))


def clean_output(text: str) -> str:
    """Strip template tokens, role prefixes, 'Here is a poem:' preambles and echoes of
    the request, its labels and its quote delimiters."""
    text = _TEMPLATE_TOKEN.sub("", text)
    text = _ROLE_PREFIX.sub("", text, count=1)
    text = _PREAMBLE.sub("", text, count=1)
    lines = [line.rstrip() for line in text.strip().split("\n")]
    while lines and (not lines[0].strip() or _REQUEST_ECHO.match(lines[0])):
        lines.pop(0)
    lines = [line for line in lines if not _is_echo(line)]
    # Collapse runs of blank lines: stanzas are separated by exactly one.
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    text = "\n".join(out).strip()
    return _PREAMBLE.sub("", text + "\n", count=1).strip()


_SENTENCE_END = re.compile(r"""[.!?…](?:["'’”)\]]*)(?=\s|$)""")


def trim_unfinished(text: str) -> str:
    """Drop what a token limit cut off: the trailing unfinished sentence or line.

    For a job that ended on ``finish_reason == "length"``. Prose keeps its last whole
    sentence; verse loses the cut line. A dangling heading or speaker name with
    nothing after it goes too. Never returns less than nothing: if no complete part
    exists, the text is returned as it was.
    """
    text = text.rstrip()
    lines = text.split("\n")
    last = lines[-1]
    if not _SENTENCE_END.search(last[-3:] if last else ""):
        ends = list(_SENTENCE_END.finditer(last))
        if ends and ends[-1].end() >= len(last) // 3:
            lines[-1] = last[: ends[-1].end()]
        else:
            lines.pop()
    # A heading ("Suggestions:") or a speaker cue ("MARA") with nothing under it.
    while lines and (
        lines[-1].rstrip().endswith(":") or _looks_like_cue(lines[-1]) or not lines[-1].strip()
    ):
        lines.pop()
    trimmed = "\n".join(lines).rstrip()
    return trimmed or text


def _looks_like_cue(line: str) -> bool:
    words = line.strip()
    return bool(words) and words.isupper() and len(words.split()) <= 4 and not words.endswith(".")
