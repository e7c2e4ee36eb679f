"""A ``Queue`` in a list: the sweep's queue when the whole sweep runs in one process (the ops
CLI's ``sweep``, its ``--dry-run``), and in tests of the core."""

from __future__ import annotations

from ..ports import Queue

__all__ = ["MemoryQueue"]


class MemoryQueue(Queue):
    """Messages in sending order, each with its delay; nothing is ever poisoned."""

    def __init__(self) -> None:
        self.items: list[tuple[dict, int]] = []

    def send(self, message: dict, *, delay: int = 0) -> None:
        self.items.append((message, delay))

    def poisoned(self) -> int:
        return 0
