"""LIME: a weighted linear surrogate fitted to the model around each input (Ribeiro et al., 2016,
https://arxiv.org/abs/1602.04938).

Math: sample coalitions ``z ∈ {0,1}^F`` of features (superpixels, tokens, time windows), score
``f(x_z)`` (the target's probability with 'off' features replaced by a baseline), weight each sample
by ``π(z) = sqrt(exp(−d(z)²/σ²))`` with ``d`` the cosine distance between ``z`` and the all-on
coalition (σ = 0.25), and fit a ridge regression (α = 1, unpenalised intercept). The coefficients are
the attributions; the weighted R² of the fit says how far to trust them.

xaiscope's path samples, perturbs and fits on the model's device for all inputs at once; the
reference packages (``backend="lime"``, ``backend="captum"``) run through the same call.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..attribution import Attribution
from ..errors import InputShapeError, OptionalDependencyError
from . import _features as feat
from ._common import Timer, begin
from ._perturb import evaluate_coalitions

KERNEL_WIDTH = 0.25


def sample_coalitions(n_features: torch.Tensor, n_samples: int, kind: str, seed: int) -> torch.Tensor:
    """``N×S×F`` bool coalitions; row 0 keeps every feature; padded features (≥ ``F_i``) are False.

    Images and series: each feature kept with probability ½. Tokens: as for text, a number of
    features to drop is drawn uniformly from ``1..F_i−1`` and that many are dropped at random.
    Each sample draws from its own generator seeded with ``seed``, so its coalitions depend on its
    own feature count only, never on the other samples in the batch.
    """
    n, f = len(n_features), int(n_features.max()) if len(n_features) else 0
    z = torch.zeros(n, n_samples, f, dtype=torch.bool)
    for i, fi in enumerate(n_features.tolist()):
        gen = torch.Generator().manual_seed(seed)
        if kind == "tokens":
            r = torch.rand(n_samples, fi, generator=gen)
            ranks = r.argsort(dim=1).argsort(dim=1)
            k = (torch.rand(n_samples, generator=gen) * max(fi - 1, 1)).floor().long() + 1
            zi = ranks >= k[:, None]
        else:
            zi = torch.rand(n_samples, fi, generator=gen) < 0.5
        z[i, :, :fi] = zi
        z[i, 0, :fi] = True
    return z


def kernel_weights(z: torch.Tensor, n_features: torch.Tensor, width: float = KERNEL_WIDTH) -> torch.Tensor:
    """LIME's exponential kernel on the cosine distance to the all-on coalition: ``N×S``."""
    on = z.float().sum(2)
    cos = on / (on.sqrt() * n_features[:, None].float().sqrt()).clamp_min(1e-12)
    d = 1.0 - cos
    return torch.sqrt(torch.exp(-(d ** 2) / width ** 2))


def weighted_ridge(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float = 1.0):
    """Batched weighted ridge with an unpenalised intercept (as scikit-learn's ``Ridge``).

    Shape: X ``N×S×F``, y ``N×S``, w ``N×S`` → (coef ``N×F``, intercept ``N``, weighted R² ``N``).
    """
    X, y, w = X.double(), y.double(), w.double()
    ws = w.sum(1, keepdim=True)
    xm = (w[:, :, None] * X).sum(1) / ws
    ym = (w * y).sum(1, keepdim=True) / ws
    Xc, yc = X - xm[:, None, :], y - ym
    A = Xc.transpose(1, 2) @ (w[:, :, None] * Xc) + alpha * torch.eye(X.shape[2], dtype=X.dtype, device=X.device)
    b = (Xc.transpose(1, 2) @ (w * yc)[:, :, None])
    coef = torch.linalg.solve(A, b).squeeze(2)
    intercept = ym.squeeze(1) - (xm * coef).sum(1)
    pred = (X @ coef[:, :, None]).squeeze(2) + intercept[:, None]
    ss_res = (w * (y - pred) ** 2).sum(1)
    ss_tot = (w * yc ** 2).sum(1)
    r2 = 1.0 - ss_res / ss_tot.clamp_min(1e-300)
    return coef.float(), intercept.float(), r2.float()


def lime(
    model: Any,
    x: Any,
    target: Any = None,
    *,
    n_samples: int = 1000,
    seed: int = 0,
    features: feat.Features = None,
    n_segments: Optional[int] = None,
    window: Optional[int] = None,
    baseline: Optional[torch.Tensor] = None,
    kernel_width: float = KERNEL_WIDTH,
    alpha: float = 1.0,
    output: str = "probability",
    backend: str = "xaiscope",
    batch_size: Optional[int] = None,
    progress: Optional[bool] = None,
) -> Attribution:
    """LIME attributions for a batch.

    Args:
        model: an ``explain.ModelWrapper``.
        x: a batch in the wrapper's input kind.
        target: class per sample; default the predicted class.
        n_samples: coalitions per input (the first keeps everything).
        seed: seeds the sampler; the same seed gives the same numbers.
        features: images: ``"slic"`` (default: about 64 compact superpixels, cells of side
            ``max(4, min(H, W) // 8)``, at most 256; see ``explain.methods._features.default_segments``),
            ``"quickshift"``, ``"grid"`` or a segmentation (``N×H×W``/``H×W`` ints). Images with a
            side over 256 px are segmented on a copy shrunk to 256 px and the labels scaled back
            up, so segmentation costs the same on any image size; tokens: one
            per position (padding and special ids excluded); series: windows of ``window`` steps
            (default ``T // 16``); or a grouping tensor.
        n_segments: superpixels or grid cells per image (default: the rule above).
        baseline: what 'off' features become (shaped like ``x``); default the image's mean colour
            (images), the pad id (tokens), 0 (series).
        kernel_width, alpha: the proximity kernel's width and the ridge penalty.
        output: ``"probability"`` (default) or ``"logit"`` of the target class.
        backend: ``"xaiscope"`` (batched on the device), ``"lime"`` (the lime package; images and
            tokens) or ``"captum"`` (captum's ``Lime``).

    Returns:
        ``Attribution`` with ``quality["r2"]``, the surrogate's weighted R² per input.

    Shape:
        ``values``: ``N×H×W`` (images) or ``N×T``.

    Example:
        >>> a = explain.lime(m, images, n_samples=1000, seed=0)   # doctest: +SKIP
        >>> a.quality["r2"]                                          # how well the surrogate fits
    """
    n_samples = feat.as_int(n_samples, "n_samples", 2)
    if output not in ("probability", "logit"):
        raise InputShapeError(f"output must be 'probability' or 'logit', got {output!r}")
    with Timer() as timer:
        wrapper, xd, t = begin(model, x, target)
        kind = wrapper.input_kind
        groups = feat.feature_groups(kind, xd.cpu(), features, n_segments=n_segments, window=window,
                                     skip_ids=feat.non_feature_ids(wrapper))
        nf = feat.count_features(groups)
        if baseline is None:
            base = feat.default_baseline(kind, xd, wrapper.pad_id, groups,
                                         keep=wrapper.special_mask(xd) if kind == "tokens" else None)
        else:
            base = torch.as_tensor(baseline).to(wrapper.device, xd.dtype).expand_as(xd)
        if backend == "xaiscope":
            z = sample_coalitions(nf, n_samples, kind, seed).to(wrapper.device)
            gd, td = groups.to(wrapper.device), t.to(wrapper.device)
            y = evaluate_coalitions(wrapper, xd, gd, z, base[:, None], td, output=output, batch_size=batch_size,
                                    desc="lime", progress=progress)
            w = kernel_weights(z, nf.to(wrapper.device), kernel_width)
            coef, _, r2 = weighted_ridge(z.float(), y, w, alpha)
            values = feat.expand_to_map(coef, gd).cpu()
            r2 = r2.cpu()
        elif backend == "lime":
            values, r2 = _lime_package(wrapper, xd, t, groups, nf, n_samples, seed, kernel_width, output, base)
        elif backend == "captum":
            values, r2 = _captum_lime(wrapper, xd, t, groups, base, n_samples, seed, kernel_width, output)
        else:
            raise InputShapeError(f"backend must be 'xaiscope', 'lime' or 'captum', got {backend!r}")
        values = torch.where(groups >= 0, values, torch.zeros_like(values))  # padding is never a feature
    params = {"n_samples": n_samples, "seed": seed, "features": features if isinstance(features, str) or features is None
              else "custom", "kernel_width": kernel_width, "alpha": alpha, "output": output, "backend": backend}
    return Attribution(values=values.float(), method="lime", target=t, params=params, seconds=timer.seconds,
                       quality={"r2": r2.float()})


def _predict_fn(wrapper, t_i: int, output: str):
    def fn(batch: torch.Tensor) -> np.ndarray:
        logits = wrapper.logits(batch)
        return (torch.softmax(logits, 1) if output == "probability" else logits).numpy()
    return fn


def _lime_package(wrapper, xd, t, groups, nf, n_samples, seed, width, output, base):
    try:
        from lime import lime_image, lime_text
    except ImportError as error:
        raise OptionalDependencyError("backend='lime' needs the lime package: pip install lime") from error
    kind = wrapper.input_kind
    values, r2 = [], []
    for i in range(len(xd)):
        ti = int(t[i])
        if kind == "image":
            img = xd[i].permute(1, 2, 0).double().cpu().numpy()
            seg = groups[i].numpy()
            fn = _predict_fn(wrapper, ti, output)
            explainer = lime_image.LimeImageExplainer(kernel_width=width, random_state=seed)
            exp = explainer.explain_instance(
                img, lambda b: fn(torch.from_numpy(b).permute(0, 3, 1, 2).float()), labels=(ti,), top_labels=None,
                hide_color=base[i].permute(1, 2, 0).double().cpu().numpy(), num_features=int(nf[i]), num_samples=n_samples, batch_size=256,
                segmentation_fn=lambda _img, seg=seg: seg, random_seed=seed)
            weights = dict(exp.local_exp[ti])
            values.append(torch.tensor([weights.get(int(g), 0.0) for g in seg.flatten()]).view(seg.shape))
        elif kind == "tokens":
            ids = xd[i].cpu()
            fn = _predict_fn(wrapper, ti, output)

            def classify(texts, length=len(ids)):
                rows = [[int(tok) for tok in s.split(" ")] for s in texts]
                return fn(torch.tensor(rows, dtype=torch.long).view(-1, length))

            explainer = lime_text.LimeTextExplainer(kernel_width=width * 100, bow=False, split_expression=" ",
                                                    mask_string=str(wrapper.pad_id), random_state=seed)
            exp = explainer.explain_instance(" ".join(map(str, ids.tolist())), classify, labels=(ti,),
                                             num_features=len(ids), num_samples=n_samples)
            weights = dict(exp.local_exp[ti])
            values.append(torch.tensor([weights.get(j, 0.0) for j in range(len(ids))]))
        else:
            raise InputShapeError("backend='lime' supports image and token models; use backend='xaiscope' for series")
        r2.append(float(exp.score))
    return torch.stack(values).float(), torch.tensor(r2)


def _captum_lime(wrapper, xd, t, groups, base, n_samples, seed, width, output):
    from captum.attr import Lime
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    def forward(inp):
        logits = wrapper.forward(inp)
        return torch.softmax(logits, 1) if output == "probability" else logits

    values = []
    kind = wrapper.input_kind
    with wrapper.session(grad=False):
        for i in range(len(xd)):
            mask = groups[i].to(wrapper.device)
            mask = torch.where(mask >= 0, mask, mask.max() + 1)  # non-features: one extra group, zeroed later
            mask = mask[None, None] if kind == "image" else (mask[None, :, None] if kind == "series" else mask[None])
            lm = Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0),
                      similarity_func=get_exp_kernel_similarity_function("cosine", width))
            with torch.random.fork_rng(devices=[]):  # captum samples from the global generator
                torch.manual_seed(seed)
                a = lm.attribute(xd[i:i + 1], baselines=base[i:i + 1], target=int(t[i]), feature_mask=mask,
                                 n_samples=n_samples, perturbations_per_eval=min(n_samples, 256))
            a = a[0].float().cpu()
            values.append(a[0] if kind == "image" else (a[:, 0] if kind == "series" else a))
    return torch.stack(values), torch.full((len(xd),), float("nan"))
