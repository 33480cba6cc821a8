"""Error types the CLI turns into one-line messages and exit codes.

Anything a user can cause (bad config, missing file, absent device, ...) raises
:class:`UserError`; the CLI prints ``error: <message>`` and exits 2 without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment; the CLI exits 2."""

    exit_code = 2


class ConfigError(UserError):
    """An invalid configuration value; the message names the offending key."""


class DataError(UserError):
    """A dataset that cannot be loaded or does not fit the configured schema."""


class CheckFailed(Exception):
    """A quality gate or validation check failed; the CLI exits 1 after writing its report."""

    exit_code = 1


class WorkerLost(CheckFailed):
    """Multi-worker training lost a peer (killed, or silent past the collective timeout); the
    CLI exits 1. Relaunching every worker with ``--resume`` continues from the last checkpoint."""
