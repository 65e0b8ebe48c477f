"""LIME and SHAP: xaiscope side by side with the lime, shap and captum packages, and against the limit.

The limit for a perturbation method with S samples is (model forward throughput ÷ S) explanations
per second. Each row reports seconds per explanation (medians of ``--repeats`` runs) and its ratio to
that limit. The reference packages run with their documented batching knobs.

Usage:
    python benchmarks/bench_perturbation.py [--device cuda] [--repeats 3] [--size 32] [--samples 1000]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
from benchmarks._common import ResNet18Like, base_parser, machine_line, markdown_table, median_seconds  # noqa: E402
from explain.methods._features import image_groups  # noqa: E402
from explain.zoo import BiLSTMClassifier  # noqa: E402


def forward_limit(net, x, device, repeats):
    def fwd():
        with torch.no_grad():
            net(x)
    return len(x) / median_seconds(fwd, repeats, device)


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="image side (default 32)")
    p.add_argument("--samples", type=int, default=1000, help="perturbations per explanation (default 1000)")
    p.add_argument("--images", type=int, default=4, help="images explained per xaiscope call (default 4)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    S, n, R = args.samples, args.images, args.repeats
    torch.manual_seed(0)
    net = ResNet18Like().to(device).eval()
    for q in net.parameters():
        q.requires_grad_(False)
    x = torch.rand(n, 3, args.size, args.size, device=device)
    m = explain.ModelWrapper(net, "image", device=device)
    t = m.predict(x)
    limit = forward_limit(net, torch.rand(256, 3, args.size, args.size, device=device), device, R) / S
    groups = image_groups(x.cpu(), "slic", n_segments=50)
    rows = []

    def add(label, seconds_per_expl):
        rows.append([label, "ResNet-18-like", seconds_per_expl, (1 / seconds_per_expl) / limit])

    add("xaiscope lime", median_seconds(lambda: explain.lime(m, x, t, n_samples=S, features=groups), R, device) / n)
    add("xaiscope shap (kernel)", median_seconds(lambda: explain.shap(m, x, t, n_samples=S, features=groups), R, device) / n)

    from lime import lime_image
    img = x[0].permute(1, 2, 0).double().cpu().numpy()
    seg = groups[0].numpy()
    fn = lambda b: torch.softmax(net(torch.from_numpy(b).permute(0, 3, 1, 2).float().to(device)), 1).cpu().numpy()  # noqa: E731
    for bs in (10, 256):
        expl = lime_image.LimeImageExplainer(random_state=0)
        run = lambda bs=bs: expl.explain_instance(img, fn, labels=(int(t[0]),), top_labels=None, num_features=int(seg.max()) + 1,  # noqa: E731
                                                  num_samples=S, batch_size=bs, segmentation_fn=lambda _i: seg, random_seed=0)
        with torch.no_grad():
            add(f"lime package (batch_size={bs})", median_seconds(run, max(1, R - 1), device, warmup=0))

    import shap
    masker = shap.maskers.Image(np.zeros((args.size, args.size, 3)), (args.size, args.size, 3))
    f_np = lambda b: torch.softmax(net(torch.from_numpy(np.asarray(b)).permute(0, 3, 1, 2).float().to(device)), 1).detach().cpu().numpy()  # noqa: E731
    explainer = shap.Explainer(f_np, masker, algorithm="partition")
    with torch.no_grad():
        add("shap Partition (image masker)", median_seconds(
            lambda: explainer(x[:1].permute(0, 2, 3, 1).cpu().numpy(), max_evals=S, batch_size=256,
                              outputs=[int(t[0])], silent=True), max(1, R - 1), device, warmup=0))
    bg = torch.rand(8, 3, args.size, args.size, device=device)
    gexp = shap.GradientExplainer(net, bg)
    add("shap GradientExplainer", median_seconds(lambda: gexp.shap_values(x[:1], nsamples=200, ranked_outputs=1),
                                                 max(1, R - 1), device, warmup=0))
    add("xaiscope shap (gradient, 200 samples)",
        median_seconds(lambda: explain.shap(m, x, t, algorithm="gradient", background=bg, n_samples=200), R, device) / n)
    rows[-2][3] = rows[-1][3] = "-"  # gradient methods: a different limit (not forward/S)

    from captum.attr import KernelShap, Lime
    mask = groups[0].to(device)[None, None]
    for cls, label in ((Lime, "captum Lime"), (KernelShap, "captum KernelShap")):
        a = cls(net)
        add(f"{label} (perturbations_per_eval=256)", median_seconds(
            lambda a=a: a.attribute(x[:1], target=int(t[0]), feature_mask=mask, n_samples=S, perturbations_per_eval=256),
            max(1, R - 1), device, warmup=0))

    vocab, length = 5000, 64
    lstm = BiLSTMClassifier(vocab, 2, embed_dim=128, hidden=128).to(device).eval()
    ids = torch.randint(2, vocab, (n, length), device=device)
    ms = explain.ModelWrapper(lstm, "tokens", device=device)
    ts = ms.predict(ids)
    seq_limit = forward_limit(lstm, torch.randint(2, vocab, (256, length), device=device), device, R) / S
    for label, fn_ in (("xaiscope lime", lambda: explain.lime(ms, ids, ts, n_samples=S)),
                       ("xaiscope shap (kernel)", lambda: explain.shap(ms, ids, ts, n_samples=S))):
        sec = median_seconds(fn_, R, device) / n
        rows.append([label, "BiLSTM tokens", sec, (1 / sec) / seq_limit])
    from lime import lime_text
    text = " ".join(map(str, ids[0].tolist()))
    cls_fn = lambda texts: ms.probs(torch.tensor([[int(w) for w in s.split(" ")] for s in texts])).numpy()  # noqa: E731
    lt = lime_text.LimeTextExplainer(bow=False, split_expression=" ", mask_string="0", random_state=0)
    sec = median_seconds(lambda: lt.explain_instance(text, cls_fn, labels=(int(ts[0]),), num_features=length, num_samples=S),
                         max(1, R - 1), device, warmup=0)
    rows.append(["lime package LimeTextExplainer", "BiLSTM tokens", sec, (1 / sec) / seq_limit])

    print(f"machine: {machine_line(device)}; {args.size}px images, {S} samples per explanation; "
          f"medians of {R} runs (references {max(1, R - 1)})\n")
    print(markdown_table(["method", "model", "seconds / explanation", "ratio to forward limit"], rows))


if __name__ == "__main__":
    main()
