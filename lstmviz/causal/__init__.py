"""Interventions and attribution for recurrent models: from "this unit correlates" to "this unit causes".

* :func:`intervene` runs a model with units of ``h`` / ``c`` held at chosen values (the total effect);
  :func:`effects` sets that against the direct effect through the decoder alone.
* :func:`attribute` gives each input token's share of log p(target) at one position (integrated gradients,
  or gradient × input).
* :func:`generate` samples from a language model, seeded, with the clamp held at every step.
"""

from .attribute import Attribution, attribute
from .clamp import HOLDABLE, holdable_names
from .generate import generate
from .intervene import Effects, Intervention, effects, intervene

__all__ = [
    "HOLDABLE",
    "Attribution",
    "Effects",
    "Intervention",
    "attribute",
    "effects",
    "generate",
    "holdable_names",
    "intervene",
]
