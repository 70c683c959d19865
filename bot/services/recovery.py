"""Restart recovery: accepted requests survive a crash or restart and are answered once.

Run once at start-up, after the engine has started and before new commands arrive:

1. rows left 'running' go back to 'queued' (the process died mid-generation);
2. interaction tokens too old to use are forgotten (Discord's last 15 minutes);
3. every undelivered row is either resubmitted to the same engine under its own id
   (unfinished) or handed over as it is (finished, answer never sent).

Delivering is Discord's business, so it is left to the caller (``cogs.presenter``);
this module knows nothing about Discord. The exactly-once gate is
``CreationService.claim_delivery`` (see there and ``cogs.presenter``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain import RequestRecord, utcnow
from bot.services.creations import CreationService, Submission
from bot.storage.repositories import Clock, RequestRepository

log = logging.getLogger(__name__)

# Discord keeps an interaction's webhook for 15 minutes from its creation. The margin
# covers clock skew and the time a final edit takes: past it, answer in the channel.
TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Recovered:
    """One request to answer after a restart."""

    record: RequestRecord
    # The resubmitted job; None when the row is already finished (deliver it as stored).
    submission: Submission | None

    @property
    def token_usable_until(self) -> datetime | None:
        """Until when the stored interaction token may be used, if there is one."""
        return token_deadline(self.record)


def token_deadline(record: RequestRecord) -> datetime | None:
    if record.interaction_token is None or record.application_id is None:
        return None
    return record.created_at + TOKEN_LIFETIME - TOKEN_MARGIN


class RecoveryService:
    def __init__(
        self, creations: CreationService, requests: RequestRepository, *, clock: Clock = utcnow
    ) -> None:
        self._creations = creations
        self._requests = requests
        self._clock = clock

    async def recover(self) -> list[Recovered]:
        """Requeue, expire tokens, resubmit; return what must now be delivered, oldest first."""
        requeued = await self._requests.requeue_interrupted()
        expired = await self._requests.expire_tokens(
            self._clock() - (TOKEN_LIFETIME - TOKEN_MARGIN)
        )
        pending: list[Recovered] = []
        for record in await self._requests.undelivered():
            if record.is_finished:
                pending.append(Recovered(record, None))
                continue
            submission = await self._creations.resume(record)
            if submission is None:
                # Refused (limits, unknown command): resume() finished the row; reload it.
                reloaded = await self._requests.get(
                    record.guild_id, record.id, user_id=record.user_id
                )
                if reloaded is not None:
                    pending.append(Recovered(reloaded, None))
                continue
            pending.append(Recovered(record, submission))
        if pending or requeued or expired:
            log.info(
                "recovery: %d undelivered requests (%d were running, %d tokens expired)",
                len(pending),
                requeued,
                expired,
            )
        return pending
