"""User-facing errors.

Anything a user can cause (unknown task id, missing data, bad config key,
corrupt game file) raises :class:`MprError` with one readable line. The CLI
prints that line and exits non-zero; it never shows a traceback for them.
"""


class MprError(Exception):
    """An error whose message is meant for the user, as a single line."""

    exit_code = 2

    def __init__(self, message: str):
        # One line only: newlines would break the "one clear error line" contract.
        super().__init__(" ".join(str(message).split()))


class DataMissingError(MprError):
    """The ALFWorld game files are not where mpr looks for them."""


class TaskNotFoundError(MprError):
    """A task id or game path that does not resolve to a game file."""


class GameFileError(MprError):
    """A game file that exists but cannot be loaded (corrupt, truncated, wrong format)."""


class ConfigError(MprError):
    """A configuration value or key that is not valid."""
