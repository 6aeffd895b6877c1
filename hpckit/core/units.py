"""Numbers for people: rates in Hz/kHz/MHz, sizes in B/kB/MB/GB, counted nouns in the singular for one."""

from __future__ import annotations


def _scaled(value: float, units: tuple[str, ...], step: float = 1000.0) -> str:
    v = float(value)
    for unit in units[:-1]:
        if abs(v) < step:
            return f"{v:.0f} {unit}" if unit == units[0] else f"{v:.1f} {unit}"
        v /= step
    return f"{v:.1f} {units[-1]}"


def format_rate(hz: float) -> str:
    """``812 Hz``, ``48.2 kHz``, ``3.1 MHz``."""
    return _scaled(hz, ("Hz", "kHz", "MHz", "GHz"))


def format_bytes(n: float) -> str:
    """``512 B``, ``12.4 kB``, ``3.2 MB``, ``1.5 GB`` (powers of 1000)."""
    return _scaled(n, ("B", "kB", "MB", "GB", "TB"))


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 chunk``, ``2 chunks``, ``1,000 events``."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"
