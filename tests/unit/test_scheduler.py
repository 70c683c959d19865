"""FairQueue order and Limits messages: pure bookkeeping, no engine."""

from __future__ import annotations

import pytest

from bot.errors import LimitReached, QueueFull
from bot.generation.scheduler import FairQueue, Limits


def drain(queue: FairQueue[str]) -> list[str]:
    out = []
    while queue:
        out.append(queue.pop())
    return out


def test_round_robin_across_guilds_then_members_fifo_per_member() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(4):
        queue.push(f"A{i}", guild=1, member=10)
    queue.push("B0", guild=2, member=20)
    queue.push("B1", guild=2, member=21)
    queue.push("dm0", guild=None, member=30)

    assert drain(queue) == ["A0", "B0", "dm0", "A1", "B1", "A2", "A3"]


def test_members_take_turns_within_a_guild() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(3):
        queue.push(f"u1-{i}", guild=1, member=1)
    queue.push("u2-0", guild=1, member=2)

    assert drain(queue) == ["u1-0", "u2-0", "u1-1", "u1-2"]


def test_iteration_predicts_pop_order_without_changing_it() -> None:
    queue: FairQueue[str] = FairQueue()
    for item, guild, member in [
        ("a", 1, 1), ("b", 1, 1), ("c", 1, 2), ("d", 2, 3), ("e", None, 4), ("f", 2, 3)
    ]:  # fmt: skip
        queue.push(item, guild, member)
    queue.pop()  # rotations are mid-way, not at their start

    predicted = list(queue)
    assert predicted == list(queue)  # iterating twice changes nothing
    assert drain(queue) == predicted


def test_remove_takes_an_item_out_without_disturbing_turns() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("A0", 1, 1)
    queue.push("A1", 1, 1)
    queue.push("B0", 2, 2)

    assert queue.remove("B0")
    assert not queue.remove("B0")
    assert "B0" not in queue and len(queue) == 2
    assert drain(queue) == ["A0", "A1"]
    with pytest.raises(IndexError):
        queue.pop()


def test_an_item_can_be_queued_only_once() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("x", 1, 1)
    with pytest.raises(ValueError):
        queue.push("x", 2, 2)


def test_member_limit_is_named_and_counts_across_guilds() -> None:
    limits = Limits(queue_limit=10, guild_limit=10, member_limit=2)
    limits.add(1, 7)
    limits.add(2, 7)

    with pytest.raises(LimitReached) as refused:
        limits.check(3, 7)
    assert refused.value.message == (
        "You already have 2 requests in progress — the limit per member is 2. "
        "Please wait for one to finish."
    )
    limits.check(3, 8)  # someone else is fine
    limits.discard(1, 7)
    limits.check(3, 7)  # and so is member 7 once one request has ended


def test_guild_limit_is_named_and_spares_other_guilds_and_dms() -> None:
    limits = Limits(queue_limit=10, guild_limit=1, member_limit=5)
    limits.add(1, 7)
    limits.add(None, 8)

    with pytest.raises(LimitReached, match="limit per server is 1"):
        limits.check(1, 9)
    limits.check(2, 9)
    limits.check(None, 9)  # DMs are not a server


def test_global_limit_raises_queue_full_naming_the_limit() -> None:
    limits = Limits(queue_limit=2, guild_limit=5, member_limit=5)
    limits.add(1, 1)
    limits.add(2, 2)

    with pytest.raises(QueueFull, match="holds at most 2"):
        limits.check(3, 3)
    assert limits.total == 2
