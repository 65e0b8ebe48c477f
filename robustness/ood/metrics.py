"""OOD metrics from scikit-learn: AUROC, AUPR-In, AUPR-Out and FPR at 95 % TPR."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from explain.errors import EmptyDataError, NonFiniteOutputError


def ood_metrics(scores_in: torch.Tensor, scores_out: torch.Tensor, tpr: float = 0.95) -> dict:
    """Metrics for scores where higher = more OOD.

    * AUROC — OOD as the positive class;
    * AUPR-Out — average precision with OOD positive; AUPR-In — with in-distribution positive
      (scores negated);
    * FPR@95%TPR — the share of OOD samples accepted as in-distribution at the threshold that keeps
      ``tpr`` of the in-distribution samples (in-distribution as the positive class).

    Raises:
        EmptyDataError: either set of scores is empty.
        NonFiniteOutputError: a score is NaN/Inf (the in-distribution ones are named first).
    """
    s_in = torch.as_tensor(scores_in).detach().double().cpu().flatten()
    s_out = torch.as_tensor(scores_out).detach().double().cpu().flatten()
    for label, s in (("in-distribution", s_in), ("out-of-distribution", s_out)):
        if len(s) == 0:
            raise EmptyDataError(f"ood_metrics: no {label} scores; both sets need at least one sample")
        if not bool(torch.isfinite(s).all()):
            bad = (~torch.isfinite(s)).nonzero().flatten().tolist()
            raise NonFiniteOutputError(bad, len(s), what=f"the {label} OOD scores", scope="batch",
                                       of=f"of the {label} scores")
    s_in, s_out = s_in.numpy(), s_out.numpy()
    labels = np.concatenate([np.zeros(len(s_in)), np.ones(len(s_out))])
    scores = np.concatenate([s_in, s_out])
    fpr_in, tpr_in, _ = roc_curve(1 - labels, -scores)  # in-distribution positive
    idx = int(np.searchsorted(tpr_in, tpr, side="left"))
    fpr95 = float(fpr_in[min(idx, len(fpr_in) - 1)])
    roc_fpr, roc_tpr, _ = roc_curve(labels, scores)
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "aupr_in": float(average_precision_score(1 - labels, -scores)),
        "aupr_out": float(average_precision_score(labels, scores)),
        "fpr95": fpr95,
        "roc": (roc_fpr.tolist(), roc_tpr.tolist()),
    }
