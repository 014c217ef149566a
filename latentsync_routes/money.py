"""Money is added and compared in exact integer micro-dollars, never in floats.

Amounts travel as floats rounded to the micro-dollar (what JSON and the records carry, and what the
price book's arithmetic gives), but a float sum drifts: ``0.2 + 0.2 + 0.2 > 0.6``, so a budget of $0.60
would refuse three $0.20 jobs. Every total, remaining budget and cap comparison therefore goes through
:func:`micros` (the decimal value of the float's shortest repr, rounded half-even to 1e-6) and back.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

#: Micro-dollars (or micro-units of any currency) per unit.
MICROS = 1_000_000
_STEP = Decimal(1) / MICROS


def micros(amount: float | int | Decimal | str | None) -> int:
    """``amount`` as integer micro-units, exactly (``None`` counts as zero)."""
    if amount is None:
        return 0
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    if not value.is_finite():
        raise ValueError(f"an amount of money must be finite, got {amount!r}")
    return int((value / _STEP).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def exact(amount: float | int | Decimal | str) -> Decimal:
    """A price-book figure or a provider's number as the decimal it was written as (a float's shortest
    repr), so products of prices and quantities are computed exactly before rounding to the micro-unit."""
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    if not value.is_finite():
        raise ValueError(f"an amount of money must be finite, got {amount!r}")
    return value


def from_micros(value: int) -> float:
    """Integer micro-units as the nearest float (whose repr is the exact six-decimal amount)."""
    return float(Decimal(value) / MICROS)


def total(amounts: Iterable[float | int | Decimal | str | None]) -> float:
    """The exact sum of ``amounts`` (rounded to the micro-unit each)."""
    return from_micros(sum(micros(a) for a in amounts))


def exceeds(amount: float | int | Decimal | str | None, cap: float | int | Decimal | str) -> bool:
    """Whether ``amount`` is over ``cap``, compared exactly: $0.60 does not exceed a $0.60 cap."""
    return micros(amount) > micros(cap)
