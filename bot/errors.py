"""Errors a person is meant to read.

Anything raised as a ``UserFacingError`` reaches the member as a short, friendly,
ephemeral message; everything else is a bug, logged with its traceback.
These classes know nothing about Discord so the engine and services can raise them.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error whose message is written for the member who caused it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(UserFacingError):
    """The member's input cannot be used as it is (empty, too long, only mentions...)."""


class LimitReached(UserFacingError):
    """A queue or rate limit refuses the request; the message names the limit."""


class QueueFull(LimitReached):
    """The generation queue is full right now."""


class JobCancelled(UserFacingError):
    """The job was cancelled before it finished."""


class GenerationFailed(UserFacingError):
    """The model could not produce a result for this request."""


class ConfigError(Exception):
    """A configuration value is invalid; the message names the key."""
