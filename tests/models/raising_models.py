"""User models whose own code raises, loaded in tests with ``--code tests/models --model raising_models:<factory>``:
lstmviz must report these as the model's errors (exit 1), not as a call convention to choose."""

from __future__ import annotations

from torch import nn
from user_models import BatchFirstGRU


class AlwaysRaises(BatchFirstGRU):
    """A forward that fails whatever it is given, after its recurrent module has run."""

    def __init__(self, error: type[Exception]):
        super().__init__()
        self.error = error

    def forward(self, ids):
        super().forward(ids)
        raise self.error("this model is broken on purpose")


def forward_value_error() -> nn.Module:
    return AlwaysRaises(ValueError)


def forward_type_error() -> nn.Module:
    return AlwaysRaises(TypeError)


def factory_value_error() -> nn.Module:
    raise ValueError("the config file says hidden=-1")


def factory_type_error() -> nn.Module:
    return nn.LSTM("eight", 8)  # a TypeError raised inside the factory, not by calling it wrongly
