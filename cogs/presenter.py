"""How a creation looks in Discord while it is queued, generating, and finished.

Shared by the command cogs; loaded as an extension only to register the persistent
✖ Cancel button. Every message carrying generated or member text is sent with
``AllowedMentions.none()``.

Exactly once. ``CreationService.claim_delivery`` (a conditional UPDATE on the row) is
the single gate, taken *before* the final answer is sent, after the outcome is recorded:

* crash before the claim: the row is undelivered, so the next start runs or delivers
  it again (at least once across restarts);
* crash between claim and send (one HTTP call): that answer is not shown, but it stays
  stored; it can never be shown twice, which a member would notice far more;
* a shutdown stops jobs as *interrupted*: nothing is recorded or claimed, so the next
  start runs them again and edits the original reply (or posts in the channel).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import discord

from bot.domain import RequestRecord, RequestStatus, utcnow
from bot.generation.jobs import Job, JobState
from bot.prompts import clean_output
from bot.services.creations import CancelOutcome, Submission
from bot.services.recovery import Recovered, token_deadline
from bot.text import MESSAGE_LIMIT, defuse_mentions, split_message

if TYPE_CHECKING:
    from bot.client import AtelierBot

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
MISSING: Any = discord.utils.MISSING
# Discord's id alias for an interaction's first reply (discord.py types message ids int).
ORIGINAL: Any = "@original"

HeaderBuilder = Callable[[Mapping[str, Any], int], str]
"""(stored inputs, requester's user id) -> the first line of the reply."""

# Filled by each command cog's setup(), so a reply rebuilt after a restart looks the same.
HEADERS: dict[str, HeaderBuilder] = {}

CANCEL_REPLIES = {
    CancelOutcome.CANCELLED: "✖ Stopped. What was written so far stays in the message.",
    CancelOutcome.NOT_ALLOWED: (
        "Only the member who asked for this, or a moderator with Manage Server, can cancel it."
    ),
    CancelOutcome.NOT_RUNNING: "That request is no longer running, so there is nothing to cancel.",
}


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"atelier:cancel:(?P<request_id>[0-9]{1,20})",
):
    """✖ Cancel on a live reply. The custom_id carries only the request id, so the
    button keeps working after a restart; everything else comes from storage."""

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

    async def callback(self, interaction: discord.Interaction[AtelierBot]) -> None:  # type: ignore[override]
        outcome = await interaction.client.runtime.creations.cancel(
            interaction.guild_id,
            self.request_id,
            user_id=interaction.user.id,
            # The member's permissions as the interaction payload reports them.
            moderator=interaction.permissions.manage_guild,
        )
        await interaction.response.send_message(
            CANCEL_REPLIES[outcome], ephemeral=True, allowed_mentions=NO_PINGS
        )


def cancel_view(request_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(request_id))
    return view


def header_for(record: RequestRecord) -> str:
    builder = HEADERS.get(record.command)
    if builder is None:
        return f"**/{record.command}** — for <@{record.user_id}>"
    return builder(record.inputs, record.user_id)


def live_text(header: str, job: Job) -> str:
    """The message while the job is queued or generating."""
    if job.state is JobState.QUEUED:
        place = f"#{job.position}" if job.position else "next"
        return f"{header}\n⏳ Waiting in line: {place}"
    body = defuse_mentions(clean_output(job.text))
    room = MESSAGE_LIMIT - len(header) - 40
    if len(body) > room:
        body = "…" + body[-room:]
    return f"{header}\n✍️ Writing…\n\n{body}".rstrip()


def final_chunks(
    header: str, status: RequestStatus, text: str, error: str | None = None
) -> list[str]:
    """The finished message(s): complete text split on stanza boundaries."""
    body = defuse_mentions(clean_output(text))
    if status is RequestStatus.DONE and not body:
        return [f"{header}\n⚠️ The model returned nothing usable this time. Please try again."]
    if status is RequestStatus.FAILED:
        return [f"{header}\n⚠️ {error or 'Generation failed.'}"]
    notes = {
        RequestStatus.CANCELLED: "✖ Cancelled.",
        RequestStatus.TIMED_OUT: "⌛ Stopped: this took longer than the time budget allows.",
    }
    note = notes.get(status)
    text = f"{header}\n\n{body}" if body else header
    if note:
        text = f"{text}\n\n*{note}*"
    return split_message(text)


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


async def present(
    interaction: discord.Interaction[AtelierBot], submission: Submission, header: str
) -> None:
    """Keep the deferred reply up to date with the job, then deliver it exactly once."""
    where = Destination(interaction.channel_id or 0, interaction.guild_id, interaction.followup)
    await follow(interaction.client, submission, header, where)


async def deliver_recovered(bot: AtelierBot, item: Recovered) -> None:
    """Answer a request found undelivered at start-up (see ``RecoveryService``)."""
    record = item.record
    hook = None
    if record.interaction_token is not None and record.application_id is not None:
        hook = discord.Webhook.partial(record.application_id, record.interaction_token, client=bot)
    where = Destination(record.channel_id, record.guild_id, hook, token_deadline(record))
    header = header_for(record)
    try:
        if item.submission is not None:
            await follow(bot, item.submission, header, where)
        else:
            chunks = final_chunks(header, record.status, record.output or "", record.error)
            await deliver(bot, record.id, chunks, where, record.message_id)
    except Exception:
        log.exception("could not deliver recovered request %s", record.id)


async def follow(bot: AtelierBot, submission: Submission, header: str, where: Destination) -> None:
    """Show the job's progress (at most once per progress interval), then deliver."""
    creations = bot.runtime.creations
    request_id, job = submission.request_id, submission.job
    interval = bot.settings.progress_interval_s
    shown = ""
    message_id: int | None = None
    finished = asyncio.ensure_future(job.wait())
    try:
        while not finished.done() and (hook := where.webhook()) is not None:
            text = live_text(header, job)
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
    status = RequestStatus(job.state.value)
    chunks = final_chunks(header, status, job.text, job.error)
    await deliver(bot, request_id, chunks, where, message_id)


async def deliver(
    bot: AtelierBot,
    request_id: int,
    chunks: list[str],
    where: Destination,
    message_id: int | None,
) -> None:
    """Claim the delivery, then send the final answer once (button removed)."""
    creations = bot.runtime.creations
    if not await creations.claim_delivery(request_id, message_id):
        log.info("request %s was already delivered", request_id)
        return
    if where.gone:
        return  # claimed: the result stays stored, nobody to tell
    first, *rest = chunks
    if (hook := where.webhook()) is not None:
        try:
            message = await hook.edit_message(
                ORIGINAL,
                content=first,
                view=None,
                allowed_mentions=NO_PINGS,
            )
        except discord.HTTPException as exc:
            where.lost(request_id, exc)  # nothing was shown yet: the channel may still do
        else:
            if message_id is None:
                await creations.attach_message(request_id, message.id)
            try:
                for chunk in rest:
                    await hook.send(chunk, allowed_mentions=NO_PINGS, wait=True)
            except discord.HTTPException:
                log.warning("request %s: a follow-up chunk was not delivered", request_id)
            return
    if where.gone:
        return
    # No usable token: a new message in the channel, pinging no one.
    channel = bot.get_partial_messageable(where.channel_id, guild_id=where.guild_id)
    try:
        for index, chunk in enumerate(chunks):
            sent = await channel.send(chunk, allowed_mentions=NO_PINGS)
            if index == 0:
                await creations.attach_message(request_id, sent.id)
    except discord.HTTPException as exc:
        # Deleted channel (404) or no access (403): claimed, stored, nobody to tell.
        log.info("request %s could not be posted in its channel: %s", request_id, exc)


async def setup(bot: AtelierBot) -> None:
    # Persistent: Cancel buttons on replies sent before a restart still reach us.
    bot.add_dynamic_items(CancelButton)


async def teardown(bot: AtelierBot) -> None:
    bot.remove_dynamic_items(CancelButton)
