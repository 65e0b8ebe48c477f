"""Ready-made callbacks that drive a :class:`reports.Monitor` from PyTorch Lightning or the Hugging Face
``Trainer``. Each library is imported only when its callback is asked for; neither is a dependency.

Example:
    >>> mon = reports.Monitor(m, probe=(x_val, y_val), out="runs/exp1")          # doctest: +SKIP
    >>> trainer = lightning.Trainer(callbacks=[lightning_callback(mon)])          # Lightning
    >>> trainer = transformers.Trainer(..., callbacks=[hf_callback(mon)])         # Hugging Face
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

from explain.errors import InputShapeError, OptionalDependencyError

__all__ = ["lightning_callback", "hf_callback"]


def _check_monitor(monitor: Any) -> None:
    from .monitor import Monitor
    if not isinstance(monitor, Monitor):
        raise InputShapeError(f"expected a reports.Monitor, got {type(monitor).__name__}; "
                              "make one with reports.Monitor(wrapper, probe=(x, y), out=...)")


def _batch_size(batch: Any) -> Optional[int]:
    first = batch
    if isinstance(batch, dict):
        first = next(iter(batch.values()), None)
    elif isinstance(batch, (tuple, list)) and batch:
        first = batch[0]
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else None


def _loss(outputs: Any) -> Any:
    if isinstance(outputs, dict):
        return outputs.get("loss")
    return outputs


def _first_lr(trainer: Any) -> Optional[float]:
    opts = getattr(trainer, "optimizers", None) or []
    return opts[0].param_groups[0]["lr"] if opts else None


def lightning_callback(monitor: Any):
    """A ``lightning.pytorch.Callback`` (or ``pytorch_lightning.Callback``) feeding ``monitor``.

    Hooks: ``on_train_batch_end`` → ``monitor.step(loss, lr, batch_size)`` (the loss from the
    training step's output; the first optimiser's learning rate as read at ``on_train_batch_start``,
    i.e. the rate the step used — Lightning steps per-step schedulers before ``on_train_batch_end``);
    ``on_train_epoch_end`` → ``monitor.epoch_end()``; ``on_train_end`` → ``monitor.close()``;
    ``on_train_start`` sets the monitor's ``epochs`` from ``max_epochs`` when it has none.

    Raises:
        OptionalDependencyError: neither ``lightning`` nor ``pytorch_lightning`` is installed.
    """
    _check_monitor(monitor)
    base = None
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            base = importlib.import_module(name).Callback
            break
        except ImportError:
            continue
    if base is None:
        raise OptionalDependencyError("the Lightning callback needs PyTorch Lightning: pip install lightning")

    class XaiscopeMonitorCallback(base):  # type: ignore[misc, valid-type]
        """Feeds a ``reports.Monitor`` from Lightning's training hooks."""

        def __init__(self) -> None:
            super().__init__()
            self.monitor = monitor
            self._lr: Optional[float] = None

        def on_train_start(self, trainer, pl_module):  # noqa: D102
            epochs = getattr(trainer, "max_epochs", None)
            if self.monitor.epochs is None and isinstance(epochs, int) and epochs > 0:
                self.monitor.epochs = epochs

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: D102
            self._lr = _first_lr(trainer)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: D102
            lr = self._lr if self._lr is not None else _first_lr(trainer)
            self._lr = None
            self.monitor.step(loss=_loss(outputs), lr=lr, batch_size=_batch_size(batch))

        def on_train_epoch_end(self, trainer, pl_module):  # noqa: D102
            self.monitor.epoch_end()

        def on_train_end(self, trainer, pl_module):  # noqa: D102
            self.monitor.close()

    return XaiscopeMonitorCallback()


def hf_callback(monitor: Any):
    """A ``transformers.TrainerCallback`` feeding ``monitor``.

    The ``Trainer`` zeroes gradients before its step callbacks run and reports the loss, learning
    rate and gradient norm only in its logs, so the monitor records one step per log event
    (``logging_steps``) with those values; ``on_epoch_end`` → ``monitor.epoch_end()``,
    ``on_train_end`` → ``monitor.close()``; ``on_train_begin`` sets the monitor's ``epochs`` from
    the trainer's when it has none.

    Raises:
        OptionalDependencyError: ``transformers`` is not installed.
    """
    _check_monitor(monitor)
    try:
        from transformers import TrainerCallback
    except ImportError as error:
        raise OptionalDependencyError("the Hugging Face callback needs transformers: pip install transformers") from error

    class XaiscopeMonitorCallback(TrainerCallback):
        """Feeds a ``reports.Monitor`` from the Hugging Face ``Trainer``'s logs and epoch ends."""

        def __init__(self) -> None:
            self.monitor = monitor

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
            epochs = getattr(state, "num_train_epochs", None)
            if self.monitor.epochs is None and isinstance(epochs, int) and epochs > 0:
                self.monitor.epochs = epochs

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
            logs = logs or {}
            if "loss" not in logs:
                return
            per_step = getattr(args, "per_device_train_batch_size", None)
            accumulation = getattr(args, "gradient_accumulation_steps", 1) or 1
            steps = max(1, int(getattr(args, "logging_steps", 1) or 1))
            batch = per_step * accumulation * steps if per_step else None
            self.monitor.step(loss=logs["loss"], lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
                              batch_size=batch, trainer_step=getattr(state, "global_step", None))

        def on_epoch_end(self, args, state, control, **kwargs):  # noqa: D102
            self.monitor.epoch_end()

        def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
            self.monitor.close()

    return XaiscopeMonitorCallback()
