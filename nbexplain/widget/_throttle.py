"""Decide which training steps become live frames.

Training may run thousands of steps a second on small models; the browser
needs only a handful of frames a second. The throttle is time based (so it
adapts to fast and slow models alike) and also respects a byte budget, so big
masks (224x224 = 49 kB a frame) slow the frame rate down instead of flooding
the kernel's IOPub channel.
"""

from __future__ import annotations

import time
from typing import Callable


class FrameThrottle:
    """Time- and byte-based gate for live frames.

    Parameters
    ----------
    max_fps:
        Most frames per second (default 10).
    max_bytes_per_second:
        Most frame payload bytes per second (default 250 kB/s, a quarter of
        Jupyter's default ``iopub_data_rate_limit``).
    clock:
        Monotonic clock in seconds; tests pass a fake one.
    """

    def __init__(
        self,
        max_fps: float = 10.0,
        max_bytes_per_second: float = 250_000.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not max_fps > 0:
            raise ValueError(f"max_fps must be > 0; got {max_fps!r}")
        if not max_bytes_per_second > 0:
            raise ValueError(f"max_bytes_per_second must be > 0; got {max_bytes_per_second!r}")
        self.max_fps = float(max_fps)
        self.max_bytes_per_second = float(max_bytes_per_second)
        self.clock = clock
        self._last_sent: float | None = None
        self._last_bytes = 0

    def reset(self) -> None:
        """Forget the previous run: the next frame goes out immediately."""
        self._last_sent = None
        self._last_bytes = 0

    def interval(self) -> float:
        """Seconds that must pass after the previous frame before the next one."""
        return max(1.0 / self.max_fps, self._last_bytes / self.max_bytes_per_second)

    def ready(self) -> bool:
        """True when a frame may go out now (always for the first frame of a run)."""
        if self._last_sent is None:
            return True
        return self.clock() - self._last_sent >= self.interval()

    def sent(self, nbytes: int) -> None:
        """Record that a frame of ``nbytes`` payload just went out."""
        self._last_sent = self.clock()
        self._last_bytes = int(nbytes)
