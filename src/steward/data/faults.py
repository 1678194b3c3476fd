"""A crash-injection hook for crash-safety tests (tiny on purpose).

Set ``STEWARD_FAULT`` to a point name and the process exits abruptly
(``os._exit(1)``: no cleanup, no ``finally``) when the pipeline reaches that
point, as a power cut would. Points: ``after_bronze`` (bronze committed, batch
not recorded), ``after_quarantine`` (quarantine committed, silver not),
``after_silver`` (silver committed, batches not recorded), ``before_ack``
(a stream batch is in bronze but not acknowledged), and the self-healing loop's
``loop_after_STEP`` and ``loop_train_registered``. Unset in production.
"""

from __future__ import annotations

import os

__all__ = ["fault"]


def fault(point: str) -> None:
    """Exit the process at once if ``STEWARD_FAULT`` names ``point``."""
    if os.environ.get("STEWARD_FAULT") == point:
        os._exit(1)
