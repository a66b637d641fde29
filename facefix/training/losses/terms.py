"""A loss built up term by term, each term's value kept for the training log."""

from __future__ import annotations

import torch


class LossTerms:
    """Sums weighted loss terms and records each one (weighted) under its name.

    ``total_name`` also logs the sum (``"g"`` for a generator's loss); ``None`` doesn't.
    ``result()`` gives the ``(loss, parts)`` pair that ``step.update`` expects.
    """

    def __init__(self, total_name: str | None = "g") -> None:
        self.total_name = total_name
        self.parts: dict[str, float] = {}
        self._total: torch.Tensor | None = None

    def add(self, name: str, value: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        term = value if weight == 1.0 else weight * value
        self._total = term if self._total is None else self._total + term
        self.parts[name] = float(term.detach())
        return term

    def result(self) -> tuple[torch.Tensor, dict[str, float]]:
        if self._total is None:
            raise ValueError("no loss term was added")
        if self.total_name is not None:
            self.parts[self.total_name] = float(self._total.detach())
        return self._total, self.parts
