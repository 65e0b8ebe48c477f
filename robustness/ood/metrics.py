"""OOD metrics from scikit-learn: AUROC, AUPR-In, AUPR-Out and FPR at 95 % TPR."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def ood_metrics(scores_in: torch.Tensor, scores_out: torch.Tensor, tpr: float = 0.95) -> dict:
    """Metrics for scores where higher = more OOD.

    * AUROC — OOD as the positive class;
    * AUPR-Out — average precision with OOD positive; AUPR-In — with in-distribution positive
      (scores negated);
    * FPR@95%TPR — the share of OOD samples accepted as in-distribution at the threshold that keeps
      ``tpr`` of the in-distribution samples (in-distribution as the positive class).
    """
    s_in = scores_in.double().numpy()
    s_out = scores_out.double().numpy()
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
