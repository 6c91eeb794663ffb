"""Integer money: nano-CNY amounts and exact conversions from the decimal strings people write.

1 CNY = 10**9 nano-CNY. Prices are written in CNY per million tokens (``2`` means ¥2 / 1M tokens) and
stored as nano-CNY per token (``2000``); a price that does not convert exactly is refused, so no cost is
ever rounded. Decimal is used only to parse and print; every amount that is added or compared is an int.
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

NANO_PER_CNY = 10**9
TOKENS_PER_MILLION = 10**6
NANO_PER_TOKEN_PER_CNY_PER_MTOK = NANO_PER_CNY // TOKENS_PER_MILLION  # ¥1/M tokens = 1,000 nano/token
# Digits of an amount or a price as written, and the reach of its exponent: more is no amount anyone means
# ("1e999999" would overflow, a thousand digits would be slow), and within them every product below is exact.
DECIMAL_DIGITS_MAX = 40
_EXACT = Context(prec=2 * DECIMAL_DIGITS_MAX)


class MoneyFormatError(ValueError):
    """A decimal string that is not an exact, non-negative amount in the unit asked for."""


def _decimal(text: str | int) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise MoneyFormatError(f"not a decimal number: {text!r}") from exc
    if not value.is_finite():
        raise MoneyFormatError(f"not a finite number: {text!r}")
    if len(value.as_tuple().digits) > DECIMAL_DIGITS_MAX or abs(value.adjusted()) > DECIMAL_DIGITS_MAX:
        raise MoneyFormatError(f"out of range: {str(text)[:50]!r} (at most {DECIMAL_DIGITS_MAX} digits)")
    return value


def cny_to_nano(text: str | int) -> int:
    """Parse an amount in CNY (``"12.5"``) into nano-CNY, refusing anything below a nano."""
    nano = _EXACT.multiply(_decimal(text), NANO_PER_CNY)
    if nano != nano.to_integral_value():
        raise MoneyFormatError(f"{text!r} CNY is finer than one nano-CNY")
    return int(nano)


def price_per_mtok_to_nano_per_token(text: str | int) -> int:
    """Convert a price in CNY per million tokens into nano-CNY per token, exactly."""
    value = _decimal(text)
    if value < 0:
        raise MoneyFormatError(f"a price cannot be negative: {text!r}")
    nano = _EXACT.multiply(value, NANO_PER_TOKEN_PER_CNY_PER_MTOK)
    if nano != nano.to_integral_value():
        raise MoneyFormatError(
            f"price {text!r} CNY per million tokens is finer than 1 nano-CNY per token (use at most 3 decimal places)"
        )
    return int(nano)


def nano_to_cny(amount_nano: int) -> str:
    """Format nano-CNY as a plain decimal string in CNY with no exponent: 1500000 -> '0.0015'."""
    sign = "-" if amount_nano < 0 else ""
    whole, frac = divmod(abs(amount_nano), NANO_PER_CNY)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


def nano_per_token_to_price_per_mtok(price_nano_per_token: int) -> str:
    """The price as people write it (CNY per million tokens)."""
    return nano_to_cny(price_nano_per_token * TOKENS_PER_MILLION)
