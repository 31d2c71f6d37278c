"""The dev cluster's one error: a message that says what is wrong and what to do."""

from __future__ import annotations


class DevClusterError(RuntimeError):
    """The dev cluster cannot do what was asked; the message is for the user."""
