"""Lightning callbacks that monitor explanation quality during training.

``AttributionMonitor`` is a ``pytorch_lightning.Callback``. For a ``lightning.pytorch.Trainer``
use ``dave_lightning.callbacks.lightning.AttributionMonitor`` (needs the ``lightning`` package).
"""

from dave_lightning.callbacks._failures import MonitorError
from dave_lightning.callbacks.attribution_monitor import AttributionMonitor

__all__ = ["AttributionMonitor", "MonitorError"]
