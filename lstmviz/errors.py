"""The errors lstmviz raises for a problem the user can fix, one hierarchy for the library, the CLI and the dashboard.

- :class:`UserError`: bad input (a file, an argument, a text). The base of the other two.
- :class:`ModelError`: the user's own model raised while lstmviz ran it.
- :class:`RunError`: a run directory (or another output) that cannot be opened or written, or a question the run
  cannot answer (an activation, a token column or a span it does not have).

Every message is one line that names the problem. The library names its own arguments (``model=``,
``trust_pickle=True``), never a CLI flag, and lists them in :attr:`UserError.arguments`; a front end that takes
them under other names rewords the message with :meth:`UserError.reworded` (the CLI maps ``model=`` to
``--model``). The CLI prints ``lstmviz: error: …`` and exits 2 (1 for a :class:`ModelError`); the dashboard
shows the message with ``st.error``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class UserError(ValueError):
    """Bad input from the user (a file, an argument, a text); the message is one line that names the problem.

    ``arguments``: the library arguments that the message names, each spelled exactly as in the message:
    ``"model="``, ``"trust_pickle=True"``, ``"layout='batch'|'seq'"``, so that :meth:`reworded` can spell them
    the way a front end takes them.
    """

    def __init__(self, message: str, *, arguments: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.arguments = tuple(arguments)

    def reworded(self, flags: Mapping[str, str]) -> str:
        """The message with each of :attr:`arguments` whose name ``flags`` maps spelled as that flag:
        with ``{"layout": "--layout", "trust_pickle": "--trust-pickle"}``, ``layout='batch'|'seq'`` becomes
        ``--layout batch|seq``, ``layout=`` becomes ``--layout`` and ``trust_pickle=True`` ``--trust-pickle``.
        Arguments that ``flags`` lacks stay as they are."""
        message = str(self)
        for argument in sorted(self.arguments, key=len, reverse=True):  # model="x" before model=, its start
            name, _, value = argument.partition("=")
            if name in flags:
                value = value.replace("'", "").replace('"', "")
                message = message.replace(argument, flags[name] if value in ("", "True") else f"{flags[name]} {value}")
        return message


class ModelError(UserError):
    """The user's own model raised while lstmviz ran it; ``__cause__`` is the original exception."""

    @classmethod
    def wrap(cls, e: BaseException) -> ModelError:
        """``"the model raised IndexError: …"``, on one line."""
        return cls(f"the model raised {type(e).__name__}: {' '.join(str(e).split()) or '(no message)'}")


class RunError(UserError):
    """A run directory (or another output) that cannot be opened or written, or a question the run cannot answer;
    the message is one line that names the problem."""


def no_recurrent(model: object) -> UserError:
    """The error for a model that has no ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``, which loading a model and gradient
    flow both refuse."""
    return UserError(f"{type(model).__name__} has no nn.LSTM, nn.GRU or nn.RNN module: lstmviz records only those")
