"""Sparsity schedules: the target of each pruning round (pure functions)."""
from __future__ import annotations

from enum import StrEnum


class Schedule(StrEnum):
    ONE_SHOT = 'one_shot'
    ITERATIVE = 'iterative'
    CUBIC = 'cubic'


def round_targets(target: float, *, rounds: int, schedule: str = Schedule.ONE_SHOT) -> list[float]:
    """Global sparsity after each of ``rounds`` rounds; the last entry is always ``target``.

    iterative: s_r = 1 - (1 - a)^r with a = 1 - (1 - S)^(1/R) (each round prunes the same fraction a of what is left).
    cubic (Zhu & Gupta 2017): s_r = S * (1 - (1 - r/R)^3).
    one_shot: [S] (``rounds`` must be 1).
    """
    kind = Schedule(schedule)
    if not 0.0 <= target < 1.0:
        raise ValueError(f'`target` must be in [0, 1), but got target: {target}')
    if rounds < 1:
        raise ValueError(f'`rounds` must be >= 1, but got rounds: {rounds}')
    if kind is Schedule.ONE_SHOT:
        if rounds != 1:
            raise ValueError(f'one_shot schedule has exactly 1 round, but got rounds: {rounds}')
        return [target]
    if kind is Schedule.ITERATIVE:
        a = 1.0 - (1.0 - target) ** (1.0 / rounds)
        out = [1.0 - (1.0 - a) ** r for r in range(1, rounds + 1)]
    else:
        out = [target * (1.0 - (1.0 - r / rounds) ** 3) for r in range(1, rounds + 1)]
    out[-1] = target  # no floating-point drift on the final round
    return out
