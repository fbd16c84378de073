"""The AttributionMonitor for ``lightning.pytorch`` trainers (the ``lightning`` package).

Lightning's two namespaces have separate ``Callback`` classes and a trainer of one refuses
callbacks of the other, so this twin shares every hook with
:class:`dave_lightning.callbacks.AttributionMonitor` and only changes the base class.

Example (with ``lightning`` installed)::

    import lightning.pytorch as L
    from dave_lightning.callbacks.lightning import AttributionMonitor

    trainer = L.Trainer(callbacks=[AttributionMonitor(methods=["dave", "gradient"])])
"""

from __future__ import annotations

try:
    import lightning.pytorch as lightning_pytorch
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "dave_lightning.callbacks.lightning needs the `lightning` package "
        "(pip install lightning); for pytorch_lightning trainers use "
        "dave_lightning.callbacks.AttributionMonitor"
    ) from error

from dave_lightning.callbacks import attribution_monitor
from dave_lightning.callbacks._hooks import MonitorHooks

__all__ = ["AttributionMonitor"]


class AttributionMonitor(MonitorHooks, lightning_pytorch.Callback):
    """Track explanation quality over epochs; the options of the ``pytorch_lightning`` twin."""

    __doc__ = attribution_monitor.AttributionMonitor.__doc__
