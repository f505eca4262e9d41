"""Numbers as a student reads them aloud in a lesson's sentences: percentages, "times", powers of ten."""

from __future__ import annotations


def percent(x: float) -> str:
    """A fraction as a percentage a student reads easily: 87%, 4.3%, 0.29%, or 1.5 × 10⁻⁹% below 0.01%."""
    p = 100 * x
    if p >= 10:
        return f"{p:.0f}%"
    return f"{p:.2g}%" if p >= 0.01 else f"{sci(p)}%"


def times(x: float) -> str:
    """``12 times``, ``3,400 times``, ``3 × 10⁸ times``."""
    return f"{x:,.0f} times" if x < 1e5 else f"{sci(x)} times"


def sci(x: float) -> str:
    """``1.5 × 10⁻¹¹``: one or two significant digits and a power of ten in superscript."""
    mantissa, exponent = f"{x:.1e}".split("e")
    sup = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
    return f"{mantissa.rstrip('0').rstrip('.')} × 10{str(int(exponent)).translate(sup)}"
