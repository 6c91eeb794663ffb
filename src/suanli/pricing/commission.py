"""The platform's commission on what operators sell: versioned rates in basis points, and the split.

A rate is an integer number of basis points (1 bp = 0.01 %, so 500 bp = 5 %): the split of a gross amount
is then exact integer arithmetic. The commission is rounded down and the operator's net is the rest, so
``commission + net == gross`` always, and any rounding is in the operator's favour (docs/statements.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suanli.errors import invariant

BASIS_POINTS_WHOLE = 10_000  # 100 %


@dataclass(frozen=True, slots=True)
class CommissionVersion:
    """The rate in force from ``effective_from_ms`` (epoch ms UTC; 0: from the beginning) until the next."""

    effective_from_ms: int
    basis_points: int  # 0..10000


NO_COMMISSION = (CommissionVersion(0, 0),)


def version_at(versions: Sequence[CommissionVersion], at_ms: int) -> CommissionVersion:
    """The version in force at ``at_ms``; ``versions`` are in order and the first starts at 0."""
    invariant(bool(versions) and versions[0].effective_from_ms == 0, "commission versions start at the beginning")
    in_force = versions[0]
    for version in versions[1:]:
        if version.effective_from_ms > at_ms:
            break
        in_force = version
    return in_force


def split(gross_nano: int, basis_points: int) -> tuple[int, int]:
    """``(commission, net)`` of ``gross_nano``: the commission rounded down, the net the exact rest."""
    invariant(gross_nano >= 0 and 0 <= basis_points <= BASIS_POINTS_WHOLE, "a commission split out of range")
    commission = gross_nano * basis_points // BASIS_POINTS_WHOLE
    return commission, gross_nano - commission
