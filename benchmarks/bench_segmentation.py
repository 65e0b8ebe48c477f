"""Default image segmentation for LIME and KernelSHAP: pointing game on planted shapes.

A SmallCNN is trained on planted shapes over smooth coloured noise (``explain.zoo.planted_images``
with ``smooth=True``); on correctly classified held-out shapes each segmentation is scored by the
pointing game (does the most important pixel fall inside the shape's box?):

- the previous default: SLIC with scikit-image's compactness 10 and the superpixel's own mean colour
  as the 'off' value;
- the current default: compact SLIC with ``default_segments`` cells and the image's mean colour;
- ``features="grid"``;
- the ``lime`` package's own defaults (quickshift, its own LIME; images explained one at a time).

Usage:
    python benchmarks/bench_segmentation.py [--size 32|64] [--samples 300] [--images 40] [--threads 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
from benchmarks._common import base_parser, machine_line, markdown_table  # noqa: E402
from explain.methods._features import default_segments, image_groups, segment_means  # noqa: E402
from explain.zoo import SmallCNN, planted_images, train_classifier  # noqa: E402


def hits(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of maps whose largest value lies inside the planted box."""
    top = values.flatten(1).argmax(1)
    return float(mask.flatten(1).gather(1, top[:, None]).float().mean())


def old_segments(x: torch.Tensor, n_segments: int) -> torch.Tensor:
    """SLIC at scikit-image's default compactness (10), as the previous default used it."""
    from skimage.segmentation import slic
    imgs = x.permute(0, 2, 3, 1).double().numpy()
    return torch.stack([torch.from_numpy(np.asarray(slic(im, n_segments=n_segments, compactness=10, start_label=0),
                                                     dtype=np.int64)) for im in imgs])


def lime_package_hits(m, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, samples: int) -> tuple:
    from lime import lime_image
    found, nseg = [], []
    for i in range(len(x)):
        img = x[i].permute(1, 2, 0).double().numpy()
        exp = lime_image.LimeImageExplainer(random_state=0).explain_instance(
            img, lambda b: m.probs(torch.from_numpy(b).permute(0, 3, 1, 2).float()).numpy(),
            labels=(int(target[i]),), top_labels=None, num_samples=samples, random_seed=0, batch_size=samples)
        w = dict(exp.local_exp[int(target[i])])
        v = torch.tensor(np.vectorize(lambda g: w.get(g, 0.0))(exp.segments))
        found.append(bool(mask[i].flatten()[v.flatten().argmax()]))
        nseg.append(int(exp.segments.max()) + 1)
    return float(np.mean(found)), float(np.median(nseg))


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="image side (default 32)")
    p.add_argument("--samples", type=int, default=300, help="coalitions per LIME/SHAP explanation (default 300)")
    p.add_argument("--images", type=int, default=40, help="held-out shapes explained (default 40)")
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d = planted_images(1200, size=args.size, smooth=True, seed=0)
    net = train_classifier(SmallCNN(num_classes=len(d.class_names)), d.x[:1000], d.y[:1000], epochs=args.epochs)
    m = explain.ModelWrapper(net, "image", class_names=d.class_names, device=args.device)
    xt, yt, mt = d.x[1000:], d.y[1000:], d.mask[1000:]
    pred = m.predict(xt)
    acc = float((pred == yt).float().mean())
    keep = ((pred == yt) & mt.flatten(1).any(1)).nonzero().flatten()[: args.images]
    x, y, mask = xt[keep], yt[keep], mt[keep]
    n = default_segments(args.size, args.size)
    old = old_segments(x, n)
    new = image_groups(x)
    grid = image_groups(x, "grid")
    settings = {
        "previous default (SLIC, compactness 10, superpixel-mean 'off' colour)": (old, segment_means(x, old)),
        "current default (compact SLIC, default_segments rule, image-mean 'off' colour)": (new, None),
        "features='grid'": (grid, None),
    }
    rows = []
    for label, (seg, base) in settings.items():
        kw = {"n_samples": args.samples, "seed": 0}
        if base is None:
            lime_v = explain.lime(m, x, y, features=seg, **kw).values
            shap_v = explain.shap(m, x, y, features=seg, **kw).values
        else:  # a per-image 'off' value: LIME takes it as a baseline, SHAP as a one-image background
            lime_v = explain.lime(m, x, y, features=seg, baseline=base, **kw).values
            shap_v = torch.cat([explain.shap(m, x[i:i + 1], y[i:i + 1], features=seg[i:i + 1], background=base[i:i + 1],
                                             **kw).values for i in range(len(x))])
        per_image = [len(torch.unique(s)) for s in seg]
        rows.append([label, hits(lime_v, mask), hits(shap_v, mask), float(np.median(per_image))])
    pkg, pkg_seg = lime_package_hits(m, x, y, mask, args.samples)
    rows.append(["lime package defaults (quickshift, its own LIME)", pkg, "-", pkg_seg])
    print(f"machine: {machine_line(torch.device(args.device))}; {args.size}px planted shapes on smooth noise; "
          f"held-out accuracy {acc:.1%}; {len(x)} correctly classified shapes; {args.samples} samples each\n")
    print(markdown_table(["segmentation", "LIME pointing game", "SHAP pointing game", "segments (median)"], rows))


if __name__ == "__main__":
    main()
