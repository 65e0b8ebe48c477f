"""``reports.Monitor``: watch a training run — scalars per step and epoch, cheap probes at epoch ends.

The monitor records loss, learning rate, gradient norm, wall time and throughput per step and per
epoch into a JSON-lines history (see :mod:`reports.history`), runs the probes of
:mod:`robustness.probes` on a fixed probe set at epoch ends, shows a live figure in notebooks and a
one-line progress bar in terminals. Probes run in eval mode inside the wrapper's sessions and inside
:func:`robustness.probes.preserved_training_state`, so a run with the monitor trains bit for bit
like a run without it.

When to probe (``every``): a probe pass costs about the same at every epoch end, while epochs can
be long (thousands of samples) or a few steps, so a fixed schedule is either wasteful or too
sparse. The default, ``every="auto"``, keeps the monitor within an overhead budget
(``max_overhead=0.05``: 5 % of the training time): the first epoch is always probed, which
measures the probe's cost; a later epoch is probed when everything the monitor has cost so far
(the probes, and its own per-step and per-epoch recording and writing, as measured by its clock)
plus two more probes (this one and a reserved final one) stays within ``max_overhead`` × the
training time so far; the last epoch is always probed — at its ``epoch_end`` when ``epochs`` is
known, otherwise by :meth:`Monitor.close`, which probes the final weights if the last epoch was
skipped. So, apart from the first probe, the monitor's share of the run stays within the budget.
Every epoch record says whether it was ``probed`` and what the monitor's own recording cost
(``monitor_seconds``); figures draw probe values only at probed epochs. ``every="epoch"`` probes
every epoch, ``every=k`` every ``k``-th.

Example:
    >>> mon = reports.Monitor(m, probe=(x_val, y_val), probes=["accuracy", "explanations"], out="runs/exp1")
    >>> for epoch in range(epochs):                                   # doctest: +SKIP
    ...     for xb, yb in loader:
    ...         loss = step(xb, yb)
    ...         mon.step(loss=loss, lr=opt.param_groups[0]["lr"], batch_size=len(xb))
    ...     mon.epoch_end()
    >>> mon.close()
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

import explain
from explain import check_wrapper
from explain.data import collect
from explain.errors import InputShapeError
from robustness import probes as P

from ._monitor_parts import (NormSchedule, _progress_bar, _scalar, _tensor_scalar, _want_live, check_schedule,
                             gradient_norm_tensor, meta_record, resolve_steps)
from .history import HistoryWriter, prepare_folder, read_history, save_array

__all__ = ["Monitor", "PROBES"]

#: at most one ``fsync`` of the history per this many seconds (and one at ``close``)
SYNC_SECONDS = 5.0
#: step records are appended in groups, at least this many seconds apart (epoch records at once)
STEP_WRITE_SECONDS = 1.0

#: probe name → what it records. Only ``accuracy`` is on by default.
PROBES = {
    "accuracy": "accuracy, macro precision / recall / F1 and ECE on the probe set",
    "explanations": "maps of a registered explainer on a few fixed samples and their rank correlation to last epoch's",
    "robustness": "robust accuracy at one ε with a short PGD",
    "ood": "AUROC of one OOD detector separating the probe set from a probe OOD set",
}


class Monitor:
    """Record a training run and probe the model at epoch ends.

    Args:
        model: an ``explain.ModelWrapper`` around the network being trained.
        probe: the fixed probe set, ``(inputs, labels)`` (or a ``Dataset``/``DataLoader``).
            Keep it small (a few hundred samples): probes run on all of it every epoch.
        every: ``"auto"`` (default: probe within the ``max_overhead`` budget, always at the first
            and the last epoch; see the module docs), ``"epoch"`` (every epoch end) or an int ``k``
            (every ``k``-th epoch).
        max_overhead: with ``every="auto"``, the monitor's share of the training time, probes
            and its own recording together (default 0.05).
        epochs: the run's length in epochs, if known: the last epoch is then probed at its end
            (the Lightning and Hugging Face callbacks fill it in from the trainer).
        probes: names from :data:`PROBES`; default ``["accuracy"]``.
        out: folder for the history; ``None`` keeps records in memory only (``.records``).
        explainer: registered explainer for the ``explanations`` probe (default Grad-CAM).
        explain_samples: how many fixed probe samples it explains.
        eps, attack_steps: the ``robustness`` probe's budget (default per input kind) and PGD steps.
        ood: probe OOD inputs for the ``ood`` probe; ``ood_detector`` names the detector.
        log_every: write every ``k``-th step record (epoch records are always written); the
            gradient norm, the costliest per-step number, is read on those steps only, and the
            epoch's mean gradient norm is over them.
        grad_norm_share: the largest share of training time reading the gradient norm may take
            (default 0.01): when one read costs more than that share of a step (millisecond steps),
            it is read on every k-th written step only, k a power of two; ``None``: every one.
        steps_per_epoch: the progress bar's length, if known.
        live: ``"auto"`` (on in Jupyter), ``True`` or ``False``: a figure that updates in place.
        progress: ``"auto"`` (on when stderr is a terminal), ``True`` or ``False``.
        resume: continue a history already in ``out`` instead of refusing to touch it.
        seed: seeds the attack's random start.
        clock: the monotonic clock in seconds (default ``time.perf_counter``); a fake one makes the
            ``"auto"`` schedule reproducible in tests.

    Raises:
        InputShapeError: unknown probe names, a probe that needs labels or OOD data without them,
            or an ``out`` folder that holds other files.
    """

    def __init__(self, model: Any, probe: Any = None, *, every: Union[str, int] = "auto", max_overhead: float = 0.05,
                 epochs: Optional[int] = None,
                 probes: Optional[Sequence[str]] = None, out: Any = None, explainer: str = "gradcam",
                 explain_samples: int = 4, explainer_params: Optional[dict] = None, eps: Optional[float] = None,
                 attack_steps: int = 5, ood: Any = None, ood_detector: str = "energy", log_every: int = 1,
                 grad_norm_share: Optional[float] = 0.01,
                 steps_per_epoch: Optional[int] = None, live: Union[str, bool] = "auto",
                 progress: Union[str, bool] = "auto", resume: bool = False, seed: int = 0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        began = clock()
        self.wrapper = check_wrapper(model)
        self.probes = list(probes) if probes is not None else ["accuracy"]
        check_schedule(self.probes, PROBES, every, max_overhead, grad_norm_share, epochs)
        self.every: Union[str, int] = "auto" if every == "auto" else (1 if every == "epoch" else int(every))
        self.max_overhead, self.epochs = float(max_overhead), epochs
        self._clock = clock
        self._train_seconds = self._probe_seconds = self._own_seconds = self._own_step_seconds = 0.0
        self._probe_cost: Optional[float] = None
        self.x, self.y = (None, None)
        if probe is not None:
            self.x, self.y = collect(probe)
            self.wrapper.check_inputs(self.x, name="probe")
        if self.probes and self.x is None:
            raise InputShapeError(f"probes {self.probes} need a probe set: pass probe=(inputs, labels)")
        needs_labels = [p for p in self.probes if p in ("accuracy", "robustness")]
        if needs_labels and self.y is None:
            raise InputShapeError(f"probes {needs_labels} need labels: pass probe=(inputs, labels)")
        if self.y is not None:
            self.y = self.wrapper.check_labels(self.y, self.x, name="probe labels")
        self.ood_x = None
        if "ood" in self.probes:
            if ood is None:
                raise InputShapeError("the 'ood' probe needs out-of-distribution inputs: pass ood=...")
            self.ood_x, _ = collect(ood)
            self.wrapper.check_inputs(self.ood_x, name="ood")
        if "explanations" in self.probes:
            explain.get_explainer(explainer)
        self.explainer, self.explainer_params = explainer, dict(explainer_params or {})
        self.explain_samples, self.eps, self.attack_steps = int(explain_samples), eps, int(attack_steps)
        self.ood_detector, self.log_every, self.seed = ood_detector, max(1, int(log_every)), int(seed)
        self._norms = NormSchedule(grad_norm_share)
        self.steps_per_epoch = steps_per_epoch
        self.records: list = []
        self._pending: list = []
        self._last_write = clock()
        self._last_sync = clock()  # the first flush to the disk SYNC_SECONDS in (short runs: at close)
        self._params: list = []
        self._params_read: Optional[float] = None
        self._last_probed: Optional[int] = None
        self._prev_maps: Optional[torch.Tensor] = None
        self.epoch, self.global_step = 0, 0
        self.folder = prepare_folder(out, resume) if out is not None else None
        self._file = HistoryWriter(self.folder) if self.folder is not None else None
        if self.folder is not None and resume and (self.folder / "history.jsonl").exists():
            h = read_history(self.folder)
            self.epoch = max((int(e.get("epoch", 0)) for e in h.epochs), default=0)
            self.global_step = max((int(s.get("step", 0)) for s in h.steps), default=0)
            last = [e for e in h.epochs if e.get("maps")]
            maps = h.array(last[-1]["maps"]) if last else None
            self._prev_maps = None if maps is None else torch.from_numpy(maps.astype(np.float32))
            self._last_probed = self.epoch  # epochs of the earlier session are not probed again
        self._reset_epoch()
        self._write(meta_record(self))
        self._live = _want_live(live)
        self._view = None
        self._bar, self._bar_shown = _progress_bar(progress, self._live, steps_per_epoch, self.epoch + 1), -math.inf
        self._own_seconds += clock() - began

    # ------------------------------------------------------------------ recording
    def _write(self, record: dict, sync: bool = False) -> None:
        """Append a record, after the queued step records, in one write. ``sync`` flushes the file to
        the disk (``fsync``) unless the last flush (or the start) was less than ``SYNC_SECONDS`` ago:
        on epochs of a few milliseconds a flush per epoch would cost more than the training. Every
        line is complete once written (and readable by other processes), whatever the flushing;
        ``close`` flushes."""
        self.records.append(record)
        if self._file is not None:
            now = self._clock()
            sync = sync and now - self._last_sync >= SYNC_SECONDS
            resolve_steps(self._pending)
            self._file.append(self._pending + [record], sync=sync)
            self._pending = []
            self._last_write = now
            if sync:
                self._last_sync = now

    def _flush_steps(self) -> None:
        if self._pending:
            resolve_steps(self._pending)
            self._file.append(self._pending)
            self._pending = []
        self._last_write = self._clock()

    def _reset_epoch(self) -> None:
        self._steps: list = []  # this epoch's step records
        self._samples = 0
        self._lr: Optional[float] = None
        self._step_own = 0.0
        now = self._clock()
        if self._params_read is None or now - self._params_read >= STEP_WRITE_SECONDS:
            # the parameters whose gradients make the norm: re-read at an epoch end at most once a
            # second (a model that gains parameters is followed from then on), never at every step
            self._params, self._params_read = list(self.wrapper.model.parameters()), now
        self._epoch_start = self._last_step = now

    def step(self, loss: Any = None, lr: Any = None, *, grad_norm: Any = None, batch_size: Optional[int] = None,
             **scalars: Any) -> dict:
        """Record one training step. Call it after ``backward()`` (before or after ``optimizer.step()``).

        Args:
            loss: the step's loss (a number or a one-element tensor; read, never back-propagated).
            lr: the learning rate used.
            grad_norm: the gradient norm if you computed it (e.g. from clipping); by default the
                monitor reads the parameters' ``.grad`` buffers (``None`` when there are none).
            batch_size: samples in the step, for throughput.
            **scalars: any other number to record with the step.

        Returns:
            The step record. Its ``loss`` and ``grad_norm`` may stay tensors until the record is
            written (at the latest at the epoch's end), so that a GPU run never waits for them.
        """
        now = self._clock()
        dt = now - self._last_step
        self._last_step = now
        self.global_step += 1
        loss_v, lr_v = _tensor_scalar(loss), _scalar(lr)
        logged = self.global_step % self.log_every == 0
        if grad_norm is not None:
            norm = _tensor_scalar(grad_norm)
        elif logged and self._norms.due():  # the costliest per-step number: within its share of the time
            read = self._clock()
            norm = gradient_norm_tensor(self._params)
            self._norms.measured(self._clock() - read, dt)
        else:
            norm = None
        if lr_v is not None:
            self._lr = lr_v
        if batch_size:
            self._samples += int(batch_size)
        rec = {"type": "step", "epoch": self.epoch + 1, "step": self.global_step, "loss": loss_v, "lr": lr_v,
               "grad_norm": norm, "seconds": dt, "samples_per_s": (batch_size / dt) if batch_size and dt > 0 else None,
               **{k: _scalar(v) for k, v in scalars.items()}}
        self.records.append(rec)
        self._steps.append(rec)
        if self._file is not None and logged:
            self._pending.append(rec)  # appended in groups, at least STEP_WRITE_SECONDS apart
            if now - self._last_write >= STEP_WRITE_SECONDS:
                self._flush_steps()
        if self._bar is not None:
            self._bar.update(1)
            if loss_v is not None and now - self._bar_shown >= STEP_WRITE_SECONDS:  # reading the loss: once a second
                self._bar_shown = now
                self._bar.set_postfix_str(f"loss {_scalar(loss_v):.4g}" + (f" lr {lr_v:.2g}" if lr_v is not None else ""),
                                          refresh=False)
        spent = self._clock() - now
        self._step_own += spent
        self._own_step_seconds += spent
        self._own_seconds += spent
        return rec

    def epoch_end(self, *, probe: Optional[bool] = None, **scalars: Any) -> dict:
        """Close the epoch: aggregate its steps, run the probes if due, write the epoch record.

        Args:
            probe: ``True`` / ``False`` forces / skips the probes this epoch; ``None`` (default)
                follows ``every``.
            **scalars: numbers to record with the epoch (e.g. ``val_loss=...``).

        Returns:
            The epoch record (``probes`` holds every probe value, ``probed`` whether they ran).
        """
        start = self._clock()
        seconds = start - self._epoch_start
        self.epoch += 1
        self._train_seconds += seconds
        resolve_steps(self._steps)
        losses = [r["loss"] for r in self._steps if r["loss"] is not None and math.isfinite(r["loss"])]
        norms = [r["grad_norm"] for r in self._steps if r["grad_norm"] is not None and math.isfinite(r["grad_norm"])]
        rec = {"type": "epoch", "epoch": self.epoch, "step": self.global_step,
               "loss": sum(losses) / len(losses) if losses else None, "lr": self._lr,
               "grad_norm": sum(norms) / len(norms) if norms else None, "seconds": seconds,
               "samples_per_s": self._samples / seconds if self._samples and seconds > 0 else None,
               **{k: _scalar(v) for k, v in scalars.items()}, "probes": {}, "probe_seconds": 0.0, "maps": None,
               "probed": False}
        if self.probes and (self._due() if probe is None else bool(probe)):
            rec.update(self._probe_record())
        rec["monitor_seconds"] = self._step_own + self._clock() - start - rec["probe_seconds"]
        self._write(rec, sync=True)
        self._show()
        if self._bar is not None:
            acc = rec["probes"].get("accuracy")
            self._bar.set_postfix_str(f"epoch {self.epoch} loss {rec['loss'] or float('nan'):.4g}"
                                      + (f" acc {acc:.3f}" if acc is not None else ""))
            self._bar.reset(total=self.steps_per_epoch)
            self._bar.set_description_str(f"epoch {self.epoch + 1}")
        self._reset_epoch()
        self._own_seconds += self._clock() - start - rec["probe_seconds"]
        return rec

    def _due(self) -> bool:
        """Whether this epoch's end runs the probes (see the module docs for ``every="auto"``)."""
        if self.every != "auto":
            return self.epoch % int(self.every) == 0
        if self._probe_cost is None or (self.epochs is not None and self.epoch >= self.epochs):
            return True
        spent = self._probe_seconds + self._own_seconds  # probes and the monitor's own bookkeeping
        return spent + 2 * self._probe_cost <= self.max_overhead * (self._train_seconds - self._own_step_seconds)

    def _probe_record(self) -> dict:
        """Run the probes now; the record's ``probes``, ``maps``, ``probe_seconds`` and ``probed``."""
        start = self._clock()
        values, maps = self._run_probes()
        rec = {"probes": values, "maps": None, "probed": True}
        if maps is not None and self.folder is not None:
            rec["maps"] = save_array(self.folder, f"maps/epoch-{self.epoch:04d}.npy", maps.numpy().astype(np.float16))
        cost = self._clock() - start
        rec["probe_seconds"] = cost
        self._probe_cost = cost
        self._probe_seconds += cost
        self._last_probed = self.epoch
        return rec

    def _run_probes(self):
        m, x, y = self.wrapper, self.x, self.y
        out: dict = {}
        maps = None
        with P.preserved_training_state(m.model):
            if "accuracy" in self.probes:
                out.update(P.classification_probe(m, x, y))
            if "explanations" in self.probes:
                xs = x[: self.explain_samples]
                target = None if y is None else y[: self.explain_samples]
                r = P.explanation_probe(m, xs, target, method=self.explainer, previous=self._prev_maps,
                                        params=self.explainer_params)
                maps = r["maps"]
                self._prev_maps = maps
                out["explanation_rank_correlation"] = r["rank_correlation"]
            if "robustness" in self.probes:
                out["robust_accuracy"] = P.robustness_probe(m, x, y, eps=self.eps, steps=self.attack_steps,
                                                            seed=self.seed)["robust_accuracy"]
            if "ood" in self.probes:
                out["ood_auroc"] = P.ood_probe(m, x, y, self.ood_x, detector=self.ood_detector)["ood_auroc"]
        return out, maps

    # ------------------------------------------------------------------ views
    def _show(self) -> None:
        if not self._live:
            return
        from IPython.display import Image, display  # lazily: notebooks only

        from ._png import to_png
        from .figures_training import progress_figure
        png = to_png(progress_figure(self.records), dpi=80)
        if self._view is None:
            self._view = display(Image(png), display_id=True)
        else:
            self._view.update(Image(png))

    def close(self) -> None:
        """Finish the run: probe the final weights if the last epoch was not probed, close the progress bar.

        With ``every="auto"`` and ``epochs`` unknown, the last epoch's end could not know it was
        the last; ``close()`` then probes the model as training left it and appends the values to
        that epoch (a ``probe`` record that :func:`reports.history.read_history` merges into it).
        Call it right after training (the callbacks and ``with Monitor(...)`` do). Calling it again
        does nothing more.
        """
        if (self.every == "auto" and self.probes and self.epoch > 0 and self._last_probed != self.epoch):
            rec = {"type": "probe", "epoch": self.epoch, "step": self.global_step, **self._probe_record()}
            self._write(rec, sync=True)
            for r in reversed(self.records):
                if r.get("type") == "epoch" and r.get("epoch") == self.epoch:
                    r.update({k: rec[k] for k in ("probes", "maps", "probe_seconds", "probed")})
                    break
        if self._file is not None:
            resolve_steps(self._steps)
            self._flush_steps()
            self._file.append([], sync=True)  # flush everything to the disk once, through the open file
            self._file.close()
        if self._bar is not None:
            self._bar.set_description_str(f"{self.epoch} epoch(s) done")
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Monitor(probes={self.probes}, every={self.every}, out={str(self.folder) if self.folder else None!r}, "
                f"epoch={self.epoch})")
