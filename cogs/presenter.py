"""How a creation looks in Discord while it is queued, generating, and finished, and
the buttons that stay on it afterwards.

Shared by the command cogs (each registers a ``Look`` for its command); loaded as an
extension only to register the persistent buttons: ✖ Cancel while a job runs, then
⭐ Favourite, 🔁 Regenerate, ➕ Continue and 🗑 Delete on a finished creation. Every
button is a ``DynamicItem`` whose custom_id carries only the request id, so it keeps
working after a restart; everything else is loaded from storage, scoped to the server
the click came from. Every message carrying generated or member text is sent with
``AllowedMentions.none()``, and blocked words are masked in live and final text.

Exactly once. ``CreationService.claim_delivery`` (a conditional UPDATE on the row) is
the single gate, taken *before* the final answer is sent, after the outcome is recorded:

* crash before the claim: the row is undelivered, so the next start runs or delivers
  it again (at least once across restarts);
* crash between claim and send (one HTTP call): that answer is not shown, but it stays
  stored; it can never be shown twice, which a member would notice far more;
* a shutdown stops jobs as *interrupted*: nothing is recorded or claimed, so the next
  start runs them again and edits the original reply (or posts in the channel).

Live jobs and jobs recovered after a restart take the same road: ``follow`` shows
progress, ``render_final`` builds the answer, ``deliver`` sends it.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import discord
from discord import app_commands

from bot.client import send_error
from bot.domain import GuildSettings, RequestRecord, RequestStatus, Style, utcnow
from bot.errors import UserFacingError
from bot.generation.jobs import Job, JobState
from bot.prompts import clean_output, trim_unfinished
from bot.services.creations import CancelOutcome, Requester, Submission
from bot.services.library import not_found
from bot.services.recovery import Recovered, token_deadline
from bot.text import MESSAGE_LIMIT, defuse_mentions, split_message
from cogs.permissions import is_moderator

if TYPE_CHECKING:
    from bot.client import AtelierBot

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
MISSING: Any = discord.utils.MISSING
# Discord's id alias for an interaction's first reply (discord.py types message ids int).
ORIGINAL: Any = "@original"

Interaction = discord.Interaction["AtelierBot"]
Mask = Callable[[str], str]

# ----------------------------------------------------------------- how commands look


@dataclass(frozen=True, slots=True)
class Body:
    """What a finished creation shows: its text, and optionally the whole as a file."""

    text: str
    file: tuple[str, bytes] | None = None  # (filename, content), on the first message


def plain_body(inputs: Mapping[str, Any], text: str) -> Body:
    return Body(text)


@dataclass(frozen=True, slots=True)
class Look:
    """One command's presentation, registered by its cog so that replies rebuilt from
    storage (after a restart, or by /show) look exactly like live ones."""

    title: Callable[[Mapping[str, Any]], str]  # from stored inputs: "**Haiku** · *rain*"
    body: Callable[[Mapping[str, Any], str], Body] = plain_body
    continuable: bool = True  # offers ➕ Continue
    # Runs before a member regenerates or continues a stored creation of this command;
    # raises UserFacingError to refuse.
    may_repeat: Callable[[Interaction, RequestRecord], Awaitable[None]] | None = None


LOOKS: dict[str, Look] = {}


def register(command: str, look: Look) -> None:
    LOOKS[command] = look


def header_for(record: RequestRecord) -> str:
    """The reply's first line: title, badges, credit and the creation's number."""
    look = LOOKS.get(record.command)
    parts = [look.title(record.inputs) if look is not None else f"**/{record.command}**"]
    style = record.inputs.get("style")
    if isinstance(style, str) and style:
        parts.append(f"🎨 {discord.utils.escape_markdown(style)}")
    parent = record.inputs.get("continue_of")
    if isinstance(parent, int):
        parts.append(f"➕ continues #{parent}")
    return f"{' · '.join(parts)} — for <@{record.user_id}> · #{record.id}"


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit - 1].rstrip(" ,.;:") + "…"


# ----------------------------------------------------------------- shared by the cogs


def requester_of(interaction: Interaction) -> Requester:
    return Requester(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        user_id=interaction.user.id,
        application_id=interaction.application_id,
        interaction_token=interaction.token,
    )


def channel_nsfw(interaction: Interaction) -> bool:
    """Whether the channel is age-restricted (a partial channel does not say: no)."""
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def create(interaction: Interaction, command: str, inputs: Mapping[str, Any]) -> None:
    """Submit a creation, acknowledge at once, then follow it to its final reply.

    Submitting first lets a refusal (limits, blocked words, unknown style) reach the
    member as an ephemeral message; the reply itself is public.
    """
    submission = await interaction.client.runtime.creations.submit(
        requester_of(interaction), command, inputs, channel_nsfw=channel_nsfw(interaction)
    )
    await interaction.response.defer(thinking=True)
    await present(interaction, submission)


async def style_choices(
    interaction: Interaction, current: str, command: str
) -> list[app_commands.Choice[str]]:
    """Autocomplete for a style option: this server's styles for ``command`` only."""
    runtime = interaction.client.runtime
    styles = await runtime.styles.available(interaction.guild_id, command)
    settings = await runtime.policy.settings(interaction.guild_id)
    hide_mature = settings.mature_only_in_age_restricted and not channel_nsfw(interaction)
    needle = current.strip().lower()

    def offered(style: Style) -> bool:
        if style.disabled or not style.applies_to(command) or (style.mature and hide_mature):
            return False
        return not needle or needle in style.name or needle in style.description.lower()

    return [
        app_commands.Choice(name=clip(f"{s.name} — {s.description}", 100), value=s.name)
        for s in styles
        if offered(s)
    ][:25]


class CreationModal(discord.ui.Modal):
    """A modal whose refusals reach the member like a command's do."""

    async def on_error(self, interaction: Interaction, error: Exception, /) -> None:  # type: ignore[override]
        if isinstance(error, UserFacingError):
            await send_error(interaction, error.message)
            return
        await super().on_error(interaction, error)


# ----------------------------------------------------------------------- the buttons

CANCEL_REPLIES = {
    CancelOutcome.CANCELLED: "✖ Stopped. What was written so far stays in the message.",
    CancelOutcome.NOT_ALLOWED: "Only the member who asked for this, or a moderator, can cancel it.",
    CancelOutcome.NOT_RUNNING: "That request is no longer running, so there is nothing to cancel.",
}


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"atelier:cancel:(?P<request_id>[0-9]{1,20})",
):
    """✖ Cancel on a live reply."""

    def __init__(self, request_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                emoji="✖️",
                style=discord.ButtonStyle.secondary,
                custom_id=f"atelier:cancel:{request_id}",
            )
        )
        self.request_id = request_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(int(match["request_id"]))

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        outcome = await interaction.client.runtime.creations.cancel(
            interaction.guild_id,
            self.request_id,
            user_id=interaction.user.id,
            moderator=await is_moderator(interaction),
        )
        await interaction.response.send_message(
            CANCEL_REPLIES[outcome], ephemeral=True, allowed_mentions=NO_PINGS
        )


def cancel_view(request_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(request_id))
    return view


_BUTTONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "fav": ("⭐", "Favourite", discord.ButtonStyle.secondary),
    "regen": ("🔁", "Regenerate", discord.ButtonStyle.secondary),
    "more": ("➕", "Continue", discord.ButtonStyle.secondary),
    "del": ("🗑️", "Delete", discord.ButtonStyle.secondary),
}


def favourite_label(stars: int) -> str:
    return f"Favourite · {stars}" if stars else "Favourite"


class CreationButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"atelier:(?P<action>fav|regen|more|del):(?P<request_id>[0-9]{1,20})",
):
    """The buttons on a finished creation. The id in the custom_id is only a key: the
    creation is looked up in the server the click comes from, so a forged or copied
    custom_id can never reach another server's creation."""

    def __init__(self, action: str, request_id: int, *, stars: int = 0) -> None:
        emoji, label, style = _BUTTONS[action]
        if action == "fav":
            label = favourite_label(stars)
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=style,
                custom_id=f"atelier:{action}:{request_id}",
            )
        )
        self.action = action
        self.request_id = request_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(match["action"], int(match["request_id"]))

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        actions = {
            "fav": self.favourite,
            "regen": self.regenerate,
            "more": self.extend,
            "del": self.delete,
        }
        try:
            await actions[self.action](interaction)
        except UserFacingError as refusal:
            # A view's own error hook only logs: tell the member, ephemerally.
            await send_error(interaction, refusal.message)

    async def creation(self, interaction: Interaction) -> RequestRecord:
        record = await interaction.client.runtime.library.get(
            interaction.guild_id, self.request_id, user_id=interaction.user.id
        )
        if record is None:
            raise not_found(self.request_id)
        return record

    async def favourite(self, interaction: Interaction) -> None:
        library = interaction.client.runtime.library
        starred, stars = await library.toggle_favourite(
            interaction.guild_id, self.request_id, interaction.user.id
        )
        record = await self.creation(interaction)
        await interaction.response.edit_message(view=creation_view(record, stars))
        note = "⭐ Added to your favourites." if starred else "Removed from your favourites."
        await interaction.followup.send(note, ephemeral=True, allowed_mentions=NO_PINGS)

    async def regenerate(self, interaction: Interaction) -> None:
        record = await self.creation(interaction)
        await self.check_repeat(interaction, record)
        # The same inputs (style included): only the sample differs.
        await create(interaction, record.command, dict(record.inputs))

    async def extend(self, interaction: Interaction) -> None:
        record = await self.creation(interaction)
        look = LOOKS.get(record.command)
        if look is None or not look.continuable:
            raise UserFacingError("This kind of creation cannot be continued.")
        if record.status is not RequestStatus.DONE or not record.output:
            raise UserFacingError("There is nothing finished here to continue yet.")
        await self.check_repeat(interaction, record)
        inputs = {**record.inputs, "continue_of": record.id, "previous": record.output}
        await create(interaction, record.command, inputs)

    async def delete(self, interaction: Interaction) -> None:
        record = await self.creation(interaction)
        await interaction.client.runtime.library.delete(
            interaction.guild_id,
            record.id,
            user_id=interaction.user.id,
            moderator=await is_moderator(interaction),
        )
        await interaction.response.send_message(
            f"🗑️ Creation #{record.id} deleted.", ephemeral=True, allowed_mentions=NO_PINGS
        )
        await remove_messages(interaction, record)

    @staticmethod
    async def check_repeat(interaction: Interaction, record: RequestRecord) -> None:
        look = LOOKS.get(record.command)
        if look is not None and look.may_repeat is not None:
            await look.may_repeat(interaction, record)


def creation_view(record: RequestRecord, stars: int) -> discord.ui.View:
    """The buttons of a finished creation (also for /show re-posts)."""
    look = LOOKS.get(record.command)
    view = discord.ui.View(timeout=None)
    view.add_item(CreationButton("fav", record.id, stars=stars))
    view.add_item(CreationButton("regen", record.id))
    if look is None or look.continuable:
        view.add_item(CreationButton("more", record.id))
    view.add_item(CreationButton("del", record.id))
    return view


async def remove_messages(interaction: Interaction, record: RequestRecord) -> None:
    """Delete the clicked message, the creation's own reply, and the reply's follow-up
    chunks (bot messages of the same interaction just after it; a reply posted in the
    channel after a restart has no interaction, so only its first chunk is known)."""
    bot = interaction.client
    channel = bot.get_partial_messageable(record.channel_id, guild_id=record.guild_id)
    doomed: set[tuple[int, int]] = set()  # (channel id, message id)
    clicked = interaction.message
    if clicked is not None:
        doomed.add((clicked.channel.id, clicked.id))
    if record.message_id is not None:
        doomed.add((record.channel_id, record.message_id))
        try:
            original = (
                clicked
                if clicked is not None and clicked.id == record.message_id
                else await channel.fetch_message(record.message_id)
            )
            origin = original.interaction_metadata
            if origin is not None:
                async for later in channel.history(after=original, limit=10, oldest_first=True):
                    metadata = later.interaction_metadata
                    mine = bot.user is not None and later.author.id == bot.user.id
                    if mine and metadata is not None and metadata.id == origin.id:
                        doomed.add((record.channel_id, later.id))
        except discord.HTTPException as exc:
            log.info("creation %s: its reply could not be read (%s)", record.id, exc)
    for channel_id, message_id in sorted(doomed):
        target = bot.get_partial_messageable(channel_id, guild_id=record.guild_id)
        try:
            await target.get_partial_message(message_id).delete()
        except discord.HTTPException as exc:
            log.info("creation %s: message %s not deleted (%s)", record.id, message_id, exc)


# ------------------------------------------------------------------ live and final


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job ended, from the job itself or from the stored row."""

    status: RequestStatus
    text: str
    error: str | None = None
    cut_short: bool = False  # stopped by the token limit: the tail is unfinished

    @classmethod
    def of_job(cls, job: Job) -> Outcome:
        return cls(
            RequestStatus(job.state.value), job.text, job.error, job.finish_reason == "length"
        )

    @classmethod
    def of_record(cls, record: RequestRecord) -> Outcome:
        # The finish reason is not stored: a recovered answer is shown as recorded.
        return cls(record.status, record.output or "", record.error)


@dataclass(frozen=True, slots=True)
class Part:
    """One message of a reply."""

    content: str
    file: tuple[str, bytes] | None = None
    view: discord.ui.View | None = None

    def files(self) -> list[discord.File]:
        # A discord.File is consumed by sending: made fresh for every attempt.
        if self.file is None:
            return []
        name, data = self.file
        return [discord.File(io.BytesIO(data), filename=name)]

    def send_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"content": self.content, "allowed_mentions": NO_PINGS}
        if self.file is not None:
            kwargs["files"] = self.files()
        if self.view is not None:
            kwargs["view"] = self.view
        return kwargs


def shown_text(text: str, mask: Mask) -> str:
    """Model text as members may see it: cleaned, blocked words masked, mentions inert."""
    return defuse_mentions(mask(clean_output(text)))


def live_text(header: str, job: Job, mask: Mask) -> str:
    """The message while the job is queued or generating."""
    if job.state is JobState.QUEUED:
        place = f"#{job.position}" if job.position else "next"
        return f"{header}\n⏳ Waiting in line: {place}"
    body = shown_text(job.text, mask)
    room = MESSAGE_LIMIT - len(header) - 40
    if len(body) > room:
        body = "…" + body[-room:]
    return f"{header}\n✍️ Writing…\n\n{body}".rstrip()


_NOTES = {
    RequestStatus.CANCELLED: "✖ Cancelled.",
    RequestStatus.TIMED_OUT: "⌛ Stopped: this took longer than the time budget allows.",
}


def render_final(record: RequestRecord, outcome: Outcome, mask: Mask) -> list[Part]:
    """The finished message(s): a DONE creation gets its buttons and its command's
    look; anything else says how it ended, with whatever text there was."""
    header = header_for(record)
    text = clean_output(outcome.text)
    if outcome.cut_short and outcome.status is RequestStatus.DONE:
        text = trim_unfinished(text)
    body = defuse_mentions(mask(text))
    if outcome.status is RequestStatus.FAILED:
        return [Part(f"{header}\n⚠️ {outcome.error or 'Generation failed.'}")]
    if outcome.status is RequestStatus.DONE:
        if not body:
            return [
                Part(f"{header}\n⚠️ The model returned nothing usable this time. Please try again.")
            ]
        look = LOOKS.get(record.command)
        shown = look.body(record.inputs, body) if look is not None else Body(body)
        first, *rest = split_message(f"{header}\n\n{shown.text}")
        return [Part(first, shown.file, creation_view(record, 0)), *map(Part, rest)]
    content = f"{header}\n\n{body}" if body else header
    note = _NOTES.get(outcome.status)
    if note:
        content = f"{content}\n\n*{note}*"
    return [Part(chunk) for chunk in split_message(content)]


@dataclass
class Destination:
    """Where a reply goes: the interaction's original response while its token is
    usable, else a new message in the channel."""

    channel_id: int
    guild_id: int | None
    hook: discord.Webhook | None
    # None: valid for the whole job (a fresh interaction; jobs time out long before).
    usable_until: datetime | None = None
    gone: bool = False  # the channel or the reply was deleted: nobody left to tell

    def webhook(self) -> discord.Webhook | None:
        if self.hook is None or (self.usable_until is not None and utcnow() >= self.usable_until):
            return None
        return self.hook

    def lost(self, request_id: int, exc: discord.HTTPException) -> None:
        """The webhook failed: 404 means the reply or channel is gone; anything else
        (401: the token expired) means answer in the channel instead."""
        if isinstance(exc, discord.NotFound):
            log.info("reply for request %s is gone; result kept", request_id)
            self.gone = True
        else:
            log.info("reply for request %s not editable (%s); using the channel", request_id, exc)
        self.hook = None


async def masker(bot: AtelierBot, guild_id: int | None) -> Mask:
    """Blocked-word masking with the server's settings as they are now."""
    policy = bot.runtime.policy
    settings: GuildSettings = await policy.settings(guild_id)
    return lambda text: policy.mask(text, settings)


async def present(interaction: Interaction, submission: Submission) -> None:
    """Keep the deferred reply up to date with the job, then deliver it exactly once."""
    bot = interaction.client
    record = await bot.runtime.requests.get(
        interaction.guild_id, submission.request_id, user_id=interaction.user.id
    )
    assert record is not None, "a submitted request is stored before it is queued"
    where = Destination(interaction.channel_id or 0, interaction.guild_id, interaction.followup)
    await follow(bot, submission, record, where)


async def deliver_recovered(bot: AtelierBot, item: Recovered) -> None:
    """Answer a request found undelivered at start-up (see ``RecoveryService``)."""
    record = item.record
    hook = None
    if record.interaction_token is not None and record.application_id is not None:
        hook = discord.Webhook.partial(record.application_id, record.interaction_token, client=bot)
    where = Destination(record.channel_id, record.guild_id, hook, token_deadline(record))
    try:
        if item.submission is not None:
            await follow(bot, item.submission, record, where)
        else:
            parts = render_final(
                record, Outcome.of_record(record), await masker(bot, record.guild_id)
            )
            await deliver(bot, record.id, parts, where, record.message_id)
    except Exception:
        log.exception("could not deliver recovered request %s", record.id)


async def follow(
    bot: AtelierBot, submission: Submission, record: RequestRecord, where: Destination
) -> None:
    """Show the job's progress (at most once per progress interval), then deliver."""
    creations = bot.runtime.creations
    request_id, job = submission.request_id, submission.job
    header = header_for(record)
    mask = await masker(bot, record.guild_id)
    interval = bot.settings.progress_interval_s
    shown = ""
    message_id: int | None = None
    finished = asyncio.ensure_future(job.wait())
    try:
        while not finished.done() and (hook := where.webhook()) is not None:
            text = live_text(header, job, mask)
            if text != shown:
                # The Cancel button rides along from the first live edit on.
                view = cancel_view(request_id) if message_id is None else MISSING
                try:
                    message = await hook.edit_message(
                        ORIGINAL,
                        content=text,
                        view=view,
                        allowed_mentions=NO_PINGS,
                    )
                except discord.HTTPException as exc:
                    where.lost(request_id, exc)
                    break
                message_id, shown = message.id, text
            # Wake at the next interval, or at once when the job ends.
            await asyncio.wait({finished}, timeout=interval)
        await finished
    finally:
        finished.cancel()
    if creations.interrupted(request_id, job):
        return  # shutting down: the next start runs it again and answers then
    await creations.settled(request_id)
    parts = render_final(record, Outcome.of_job(job), mask)
    await deliver(bot, request_id, parts, where, message_id)


async def deliver(
    bot: AtelierBot,
    request_id: int,
    parts: list[Part],
    where: Destination,
    message_id: int | None,
) -> None:
    """Claim the delivery, then send the final answer once (Cancel button replaced)."""
    creations = bot.runtime.creations
    if not await creations.claim_delivery(request_id, message_id):
        log.info("request %s was already delivered", request_id)
        return
    if where.gone:
        return  # claimed: the result stays stored, nobody to tell
    first, *rest = parts
    if (hook := where.webhook()) is not None:
        kwargs = first.send_kwargs()
        try:
            message = await hook.edit_message(
                ORIGINAL,
                content=first.content,
                attachments=kwargs.get("files", MISSING),
                view=first.view,  # None removes the Cancel button
                allowed_mentions=NO_PINGS,
            )
        except discord.HTTPException as exc:
            where.lost(request_id, exc)  # nothing was shown yet: the channel may still do
        else:
            if message_id is None:
                await creations.attach_message(request_id, message.id)
            await _send_rest(request_id, functools.partial(hook.send, wait=True), rest)
            return
    if where.gone:
        return
    # No usable token: a new message in the channel, pinging no one.
    channel = bot.get_partial_messageable(where.channel_id, guild_id=where.guild_id)
    try:
        sent = await channel.send(**first.send_kwargs())
    except discord.HTTPException as exc:
        # Deleted channel (404) or no access (403): claimed, stored, nobody to tell.
        log.info("request %s could not be posted in its channel: %s", request_id, exc)
        return
    await creations.attach_message(request_id, sent.id)
    await _send_rest(request_id, channel.send, rest)


async def _send_rest(
    request_id: int, send: Callable[..., Awaitable[Any]], parts: list[Part]
) -> None:
    try:
        for part in parts:
            await send(**part.send_kwargs())
    except discord.HTTPException:
        log.warning("request %s: a follow-up chunk was not delivered", request_id)


async def setup(bot: AtelierBot) -> None:
    # Persistent: buttons on replies sent before a restart still reach us.
    bot.add_dynamic_items(CancelButton, CreationButton)


async def teardown(bot: AtelierBot) -> None:
    bot.remove_dynamic_items(CancelButton, CreationButton)
