"""Ctrl-C (SIGINT) and SIGTERM while the training loop runs: a request to stop, not an exception.

An exception raised by the signal could land between a train step's update of the variables and
the loop's count of it, so the checkpoint saved on the way out would hold a state one step off.
Inside `StopRequests` the first signal only records itself; the loop looks at `requested` between
steps, saves the last finished one and raises KeyboardInterrupt there. A second signal raises at
once (without saving: the last checkpoint stays as it was).
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = None        # "SIGINT" or "SIGTERM" once one arrived
        self._previous = {}

    def _record(self, signum, frame):
        if self.requested is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopRequests":
        if self.enabled:
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False
