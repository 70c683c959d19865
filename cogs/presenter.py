"""How a creation looks in Discord while it is queued, generating, and finished.

Shared by the command cogs (this module is a helper, not an extension). Every
message carrying generated or member text is sent with ``AllowedMentions.none()``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord

from bot.generation.jobs import Job, JobState
from bot.prompts import clean_output
from bot.services.creations import Submission
from bot.text import MESSAGE_LIMIT, defuse_mentions, split_message

if TYPE_CHECKING:
    from bot.client import AtelierBot

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()


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


def final_chunks(header: str, job: Job) -> list[str]:
    """The finished message(s): complete text split on stanza boundaries."""
    body = defuse_mentions(clean_output(job.text))
    if job.state is JobState.DONE and not body:
        return [f"{header}\n⚠️ The model returned nothing usable this time. Please try again."]
    if job.state is JobState.FAILED:
        return [f"{header}\n⚠️ {job.error or 'Generation failed.'}"]
    notes = {
        JobState.CANCELLED: "✖ Cancelled.",
        JobState.TIMED_OUT: "⌛ Stopped: this took longer than the time budget allows.",
    }
    note = notes.get(job.state)
    text = f"{header}\n\n{body}" if body else header
    if note:
        text = f"{text}\n\n*{note}*"
    return split_message(text)


async def present(
    interaction: discord.Interaction[AtelierBot], submission: Submission, header: str
) -> None:
    """Keep the deferred reply up to date with the job, then deliver it exactly once."""
    bot = interaction.client
    job = submission.job
    interval = bot.settings.progress_interval_s
    shown = ""
    finished = asyncio.ensure_future(job.wait())
    try:
        while not finished.done():
            text = live_text(header, job)
            if text != shown:
                await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
                shown = text
            # Wake at the next interval, or at once when the job ends.
            await asyncio.wait({finished}, timeout=interval)
        first, *rest = final_chunks(header, job)
        message = await interaction.edit_original_response(content=first, allowed_mentions=NO_PINGS)
        for chunk in rest:
            await interaction.followup.send(chunk, allowed_mentions=NO_PINGS)
        await bot.runtime.creations.mark_delivered(submission.request_id, message.id)
    except discord.NotFound:
        # The channel or the reply was deleted: the result stays stored, nobody to tell.
        log.info("reply for request %s is gone; result kept", submission.request_id)
        await bot.runtime.creations.mark_delivered(submission.request_id)
    finally:
        finished.cancel()
