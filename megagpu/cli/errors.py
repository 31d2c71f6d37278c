"""The one error the command reports as a usage mistake."""


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""
