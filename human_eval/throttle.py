"""Slowing down repeated wrong results-page passwords.

One counter per server process (an attacker opens fresh sessions, so a per-session counter would not
hold): after the second wrong password in a row each attempt waits twice as long as the one before, up to
`cap` seconds, until a right password or `window` seconds without a wrong one. The wait happens before the
password is checked, so a right password typed during an attack waits too; that is the price of not
telling the attacker anything by timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    def __init__(self, base: float = 1.0, cap: float = 30.0, window: float = 900.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.base, self.cap, self.window = base, cap, window
        self.clock, self.sleep = clock, sleep
        self._failures = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds the next attempt waits."""
        with self._lock:
            if self._failures and self.clock() - self._last > self.window:
                self._failures = 0
            n = self._failures
        return 0.0 if n < 2 else min(self.cap, self.base * 2 ** (n - 2))

    def wait(self) -> float:
        seconds = self.delay()
        if seconds:
            self.sleep(seconds)
        return seconds

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            self._last = self.clock()

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0


PASSWORDS = Throttle()
