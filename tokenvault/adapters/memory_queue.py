"""A ``Queue`` in a list: the sweep's queue when the whole sweep runs in one process (the ops
CLI's ``sweep``, its ``--dry-run``), and in tests of the core."""

from __future__ import annotations

from ..ports import Queue

__all__ = ["MemoryQueue"]


class MemoryQueue(Queue):
    """Messages in sending order, each with its delay, and the bodies poisoned."""

    def __init__(self) -> None:
        self.items: list[tuple[dict, int]] = []
        self.poison_bodies: list[bytes] = []

    def send(self, message: dict, *, delay: int = 0) -> None:
        self.items.append((message, delay))

    def poison(self, body: bytes) -> None:
        self.poison_bodies.append(body)

    def poisoned(self) -> int:
        return len(self.poison_bodies)
