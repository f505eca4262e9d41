"""User-facing errors: the CLI prints their one-line message as ``lstmviz: error: …`` and exits 2 (1 for a
:class:`ModelError`); the dashboard shows them with ``st.error``."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (a file, an option, a text); the message is one line that names the problem."""


class ModelError(UserError):
    """The user's own model raised while lstmviz ran it; ``__cause__`` is the original exception."""

    @classmethod
    def wrap(cls, e: BaseException) -> ModelError:
        """``"the model raised IndexError: …"``, on one line."""
        return cls(f"the model raised {type(e).__name__}: {' '.join(str(e).split()) or '(no message)'}")


class RunError(ValueError):
    """A run directory (or another output) that cannot be opened or written; the message is one line that
    names the problem."""
