"""Who goes next, and who may join the line at all.

Pure bookkeeping with no threads, clocks or models, so any worker (the local model
thread, a remote server) shares the same fairness and limits.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from bot.errors import LimitReached, QueueFull

T = TypeVar("T", bound=Hashable)

GuildKey = int | None  # None: direct messages, which share one bucket


class FairQueue(Generic[T]):
    """Waiting items, served round-robin across guilds, then across members, FIFO per member.

    One busy server cannot starve the others, and one busy member cannot starve the rest
    of their server. A newcomer guild joins the end of the rotation, so it waits for at
    most one item from each guild already waiting.
    """

    def __init__(self) -> None:
        self._guilds: OrderedDict[GuildKey, OrderedDict[int, deque[T]]] = OrderedDict()
        self._where: dict[T, tuple[GuildKey, int]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, item: object) -> bool:
        return item in self._where

    def push(self, item: T, guild: GuildKey, member: int) -> None:
        if item in self._where:
            raise ValueError(f"{item!r} is already queued")
        members = self._guilds.setdefault(guild, OrderedDict())
        members.setdefault(member, deque()).append(item)
        self._where[item] = (guild, member)

    def pop(self) -> T:
        """Take the next item in fair order; IndexError when empty."""
        if not self._guilds:
            raise IndexError("pop from an empty FairQueue")
        guild, members = next(iter(self._guilds.items()))
        member, items = next(iter(members.items()))
        item = items.popleft()
        del self._where[item]
        # Served buckets go to the back of their rotation; empty ones leave it.
        if items:
            members.move_to_end(member)
        else:
            del members[member]
        if members:
            self._guilds.move_to_end(guild)
        else:
            del self._guilds[guild]
        return item

    def remove(self, item: T) -> bool:
        """Take ``item`` out of line without disturbing anyone's turn."""
        where = self._where.pop(item, None)
        if where is None:
            return False
        guild, member = where
        members = self._guilds[guild]
        members[member].remove(item)
        if not members[member]:
            del members[member]
            if not members:
                del self._guilds[guild]
        return True

    def __iter__(self) -> Iterator[T]:
        """The order ``pop`` would serve the items in if nobody else joined."""
        # Replays pop() on a copy; the queue is small (bounded by queue_limit).
        guilds = deque(
            deque((member, deque(items)) for member, items in members.items())
            for members in self._guilds.values()
        )
        while guilds:
            members = guilds.popleft()
            member, items = members.popleft()
            yield items.popleft()
            if items:
                members.append((member, items))
            if members:
                guilds.append(members)


class Limits:
    """Counts live jobs (waiting or running) and refuses ones over a limit, in plain words.

    Members are counted across all servers; direct messages are not a server, so only
    the member and global limits apply to them.
    """

    def __init__(self, *, queue_limit: int, guild_limit: int, member_limit: int) -> None:
        self.queue_limit = queue_limit
        self.guild_limit = guild_limit
        self.member_limit = member_limit
        self._total = 0
        self._guilds: Counter[int] = Counter()
        self._members: Counter[int] = Counter()

    @property
    def total(self) -> int:
        return self._total

    def check(self, guild: GuildKey, member: int) -> None:
        """Raise ``LimitReached``/``QueueFull`` naming the limit; the most personal first."""
        mine = self._members[member]
        if mine >= self.member_limit:
            raise LimitReached(
                f"You already have {_requests(mine)} in progress — the limit per member "
                f"is {self.member_limit}. Please wait for one to finish."
            )
        if guild is not None and self._guilds[guild] >= self.guild_limit:
            raise LimitReached(
                f"This server already has {_requests(self._guilds[guild])} waiting or in "
                f"progress — the limit per server is {self.guild_limit}. Please try again "
                "when some have finished."
            )
        if self._total >= self.queue_limit:
            raise QueueFull(
                f"The writing queue is full right now: {_requests(self._total)} waiting or "
                f"in progress, and the queue holds at most {self.queue_limit}. Please try "
                "again in a minute."
            )

    def add(self, guild: GuildKey, member: int) -> None:
        self._total += 1
        self._members[member] += 1
        if guild is not None:
            self._guilds[guild] += 1

    def discard(self, guild: GuildKey, member: int) -> None:
        self._total -= 1
        _decrement(self._members, member)
        if guild is not None:
            _decrement(self._guilds, guild)


def _decrement(counter: Counter[int], key: int) -> None:
    # Drop zero counts so the counters do not grow with every member ever seen.
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _requests(count: int) -> str:
    return f"{count} request" if count == 1 else f"{count} requests"
