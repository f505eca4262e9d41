"""User-facing errors: the CLI prints their one-line message as ``lstmviz: error: …`` and exits 2."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (a file, an option, a text); the message is one line that names the problem."""
