"""Every error ARLArena raises derives from ArlArenaError; messages say how to fix the problem."""

from __future__ import annotations


class ArlArenaError(Exception):
    """Base class of all ARLArena errors."""


class SpecError(ArlArenaError, ValueError):
    """A registry spec file is malformed or inconsistent."""


class EnvNotFoundError(ArlArenaError, KeyError):
    """No registered env has this id (the message lists the ids that exist)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(ArlArenaError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class DataError(ArlArenaError):
    """Data files are missing, incomplete or fail their checksum."""


class InvalidArgumentError(ArlArenaError, ValueError, TypeError):
    """An argument, option or keyword has the wrong type or value (the message names the valid ones).

    It is also a ValueError and a TypeError, so callers written against the built-in errors
    (`except ValueError`) keep working."""


class InvalidActionError(ArlArenaError, TypeError):
    """`step` got something that is not an action (not str / ParsedAction)."""


class ResetNeededError(ArlArenaError, RuntimeError):
    """`step` was called before `reset` or after the episode ended."""


class CheckFailedError(ArlArenaError, AssertionError):
    """A conformance check (`arlarena check`) failed."""


class ConfigError(ArlArenaError, ValueError):
    """A configuration file or value is invalid."""


class RemoteEnvError(ArlArenaError):
    """The env server answered with an error (carries its code) or could not be reached."""

    def __init__(self, message: str, code: str = "internal", status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class RemoteRequestError(RemoteEnvError, ValueError):
    """The env server refused the request's values (codes invalid_request, env_error): the
    remote twin of the ValueError an in-process env raises for the same input."""


class ServerLostError(RemoteEnvError, ConnectionError):
    """The env server went away mid-episode. `op`, `request_id` and `payload` name the request
    whose outcome is unknown: `ServerChannel.resume(error)` replays it by request id once the
    server answers again and reports whether it had been applied before the loss."""

    def __init__(self, message: str, *, op: str | None = None, request_id: str | None = None, payload: dict | None = None):
        super().__init__(message, code="server_lost")
        self.op, self.request_id, self.payload = op, request_id, payload


class UnknownNameError(ConfigError, KeyError):
    """A name looked up in a table (advantage estimator, policy loss, backend) is not in it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
