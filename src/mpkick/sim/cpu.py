"""A CPU budget for the virtual board: ``cpu=0.05`` gives its MicroPython process 5% of one core.

The unix port runs at the host's full speed, so agent code that is heavy per byte or per file
costs nothing on the virtual board and never shows in a benchmark. Real boards are 10-50x
slower than one host core (about 10-20x for a 240 MHz ESP32, 30-50x for a 133 MHz RP2040). The
budget duty-cycles the process with SIGSTOP and SIGCONT: in every period of ``PERIOD`` seconds
it runs for ``share`` of it and is stopped for the rest, so whatever it computes takes about
``1 / share`` times as long, and an answer waits at most one stopped stretch. The UART pacing
(``baud``) is unaffected: the supervisor keeps carrying bytes while the board is stopped, as a
board's UART fills its buffer while the CPU is busy elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable

#: One duty cycle, in seconds: short enough that a stopped stretch is a small delay for a
#: reply (19 ms at 5%), long enough that the switching itself costs the host little.
PERIOD = 0.02


class CpuBudget:
    """Runs the process ``pid_of()`` names (it changes at every reboot) ``share`` of the time."""

    def __init__(self, share: float, pid_of: Callable[[], int | None]) -> None:
        if not 0 < share <= 1:
            raise ValueError("a CPU share is above 0 and at most 1")
        self.share = share
        self.pid_of = pid_of
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stops = 0  # duty cycles done, for tests

    def start(self) -> None:
        if self.share >= 1 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mpkick-sim-cpu", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let the process run freely again (before it is killed, or the board closes)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1)
        self._thread = None
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        pid = self.pid_of()
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def _run(self) -> None:
        on, off = PERIOD * self.share, PERIOD * (1 - self.share)
        try:
            while not self._stop.is_set():
                self._signal(signal.SIGCONT)
                time.sleep(on)
                if self._stop.is_set():
                    break
                self._signal(signal.SIGSTOP)
                self.stops += 1
                self._stop.wait(off)
        finally:
            self._signal(signal.SIGCONT)
