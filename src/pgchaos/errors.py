"""The one exception type that the CLI turns into a one-line message and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: a DSN, a path, a damaged run folder, an unreachable endpoint."""
