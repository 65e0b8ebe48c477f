"""The report's one pass over its data: every sample's outcome as numbers, the first samples whole.

In one process every batch goes through the model. Inside a process group batch ``i`` of the
stream is rank ``i % W``'s: data that can be indexed (tensors, a ``Dataset``, an unshuffled
``DataLoader``) is read only where this rank's batches lie, other sources are read whole by every
rank, each keeping its own batches. Every rank reads the first ``keep`` samples whole.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from explain.data import collect, stream
from explain.errors import NonFiniteOutputError
from robustness import distributed as dist


def read_data(model, data: Any, max_samples: Optional[int], keep: int, batch_size: int) -> tuple:
    """One streamed pass over ``data``.

    Returns:
        ``(x, y, n, outcomes, head_probs)``: the kept inputs and labels, the number of samples read,
        ``{"y", "pred", "conf"}`` of this process's samples (the performance section counts them and
        all-reduces the counts; ``y`` is ``None`` without labels), and the kept samples'
        class probabilities (``None`` in a process group, where each rank saw only its own batches).
    """
    rank, world = dist.rank_and_world()
    keep = keep if max_samples is None else min(keep, max_samples)
    s = stream(data, batch_size, max_samples=max_samples, name="data")
    preds, confs, labels = [], [], []  # type: ignore[var-annotated]

    def evaluate(x, y, offset: int):
        try:  # in a process group bad data or a failing model may show on one rank's batches only
            model.check_inputs(x, name="data")
            try:
                p = torch.softmax(model.logits(x), dim=1)  # a model that cannot run on the data fails here, once
            except NonFiniteOutputError as error:  # never counted as a class: named by position in the data
                raise error.moved([offset + i for i in error.indices], offset + error.total, scope="data") from error
            y = None if y is None else model.check_labels(y, x, name="labels")
        except Exception:
            if world > 1:
                dist.announce_failure()  # the other ranks' next collective stops instead of waiting
            raise
        conf, pred = p.max(dim=1)
        preds.append(pred)
        confs.append(conf)
        labels.append(y)
        return p

    if world > 1 and s.indexable:  # the head, then only this rank's batches
        x_keep, y_keep = collect(s, max_samples=keep, name="data")
        model.check_inputs(x_keep, name="data")
        for b, x, y in s.shard(rank, world):
            evaluate(x, y, b * batch_size)
        n, head_probs = s.n_samples, None
    else:
        head_x, head_y, head_p = [], [], []  # type: ignore[var-annotated]
        kept = n = 0
        for i, (x, y) in enumerate(s):
            p = evaluate(x, y, n) if i % world == rank else None
            if kept < keep:
                take = min(keep - kept, len(x))
                head_x.append(x[:take])
                head_y.append(None if y is None else y[:take])
                head_p.append(None if p is None else p[:take])
                kept += take
            n += len(x)
        x_keep = torch.cat(head_x)
        y_keep = None if head_y[0] is None else torch.cat(head_y)
        head_probs = torch.cat(head_p) if world == 1 else None
        if world > 1:
            model.check_inputs(x_keep, name="data")
    if preds:
        outcomes = {"y": None if labels[0] is None else torch.cat(labels), "pred": torch.cat(preds),
                    "conf": torch.cat(confs)}
    else:  # more ranks than batches: this one counts nothing
        outcomes = {"y": None if y_keep is None else torch.zeros(0, dtype=torch.long),
                    "pred": torch.zeros(0, dtype=torch.long), "conf": torch.zeros(0)}
    return x_keep, y_keep, n, outcomes, head_probs
