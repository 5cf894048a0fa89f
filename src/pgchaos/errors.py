"""The exceptions that the CLI turns into a one-line message and an exit status."""


class UsageError(Exception):
    """Bad input from the user: a DSN, a path, a damaged run folder, an unreachable endpoint."""

    exit_status = 2


class TableMissing(UsageError):
    """The ledger table is gone: every write of the run is lost, not a typo in a DSN."""

    exit_status = 3
