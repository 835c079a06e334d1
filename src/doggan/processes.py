"""Pool workers that never outlive their stage, however it ends (killed, interrupted, failed).

A worker blocked on its task queue would wait forever once its parent is gone: spawned workers hold
both ends of their queue's pipe, so they never see it close. Each worker therefore watches its
parent and exits when it is replaced (the worker was re-parented); the multiprocessing resource
tracker, which lives as long as any of them holds its pipe, then ends too.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

POLL_SECONDS = 0.2


def watch_parent(parent: int, then: Callable[..., None] | None = None, *args) -> None:
    """Pool initializer: exit this process as soon as `parent` is no longer its parent; then `then(*args)`.

    Ctrl-C is left to the parent, which ends the pool: workers ignore SIGINT.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
    if then is not None:
        then(*args)
