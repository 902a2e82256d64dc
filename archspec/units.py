"""How archspec prints counts and sizes: one formatter per kind of number."""
from __future__ import annotations

from decimal import Decimal


def human(n: int | float, unit: str = "") -> str:
    """1,234,567 -> '1.235 M' (decimal prefixes, as parameter and MAC counts are quoted)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()


def plural(n: int, word: str, many: str = "") -> str:
    """'1 epoch', '2 epochs': the regular English plural, or `many` ('1 branch', '2 branches')."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def compact(n: int) -> str:
    """1,234,567 -> '1.23M': three significant digits, for diagram labels."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def human_bytes(n: int) -> str:
    """Binary prefixes, to a tenth: 1536 -> '1.5 KiB', -2**30 -> '-1.0 GiB'. Integer arithmetic, so an
    astronomically large count prints too (whole units past a million in e-notation)."""
    sign, n = ("-" if n < 0 else ""), abs(int(n))
    for power, unit in ((5, "PiB"), (4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        scale = 1024 ** power
        tenths = (n * 10 + scale // 2) // scale  # rounded, so 2**20 - 1 is '1.0 MiB'
        if tenths >= 10:
            if tenths >= 10 ** 7:
                return f"{sign}{Decimal(tenths // 10):.3e} {unit}"  # not via float, which overflows past 1e308
            return f"{sign}{tenths // 10}.{tenths % 10} {unit}"
    return f"{sign}{n} B"
