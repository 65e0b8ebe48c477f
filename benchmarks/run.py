"""Grad-CAM and occlusion: xaiscope side by side with captum, and against the model's own limit.

The limit: a gradient method cannot beat the model's forward+backward throughput; occlusion with P
windows cannot beat forward throughput ÷ (P + 1). Each method is reported as samples/s and as a
ratio to that limit, with medians of ``--repeats`` runs in one process.
pytorch-grad-cam is timed too when it can be imported (it needs torchvision).

Usage:
    python benchmarks/run.py [--device cuda] [--repeats 5] [--size 64]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
from benchmarks._common import ResNet18Like, base_parser, machine_line, markdown_table, median_seconds  # noqa: E402
from explain.zoo import BiLSTMClassifier, GRUClassifier  # noqa: E402


def limits(net, x, device, repeats, kind="image", emb=None):
    """(forward samples/s, forward+backward samples/s) of the bare model."""
    n = x.shape[0]

    def fwd():
        with torch.inference_mode():
            net(x)

    def fwd_bwd():
        if kind == "tokens":
            e = emb(x).detach().requires_grad_(True)
            handle = emb.register_forward_hook(lambda m, i, o: e)
            try:
                net(x)[:, 0].sum().backward()
            finally:
                handle.remove()
        else:
            xr = x.detach().requires_grad_(True)
            net(xr)[:, 0].sum().backward()

    for p in net.parameters():
        p.requires_grad_(False)
    return n / median_seconds(fwd, repeats, device), n / median_seconds(fwd_bwd, repeats, device)


def bench_image(args, device):
    torch.manual_seed(0)
    net = ResNet18Like().to(device).eval()
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    n = x.shape[0]
    m = explain.ModelWrapper(net, "image", device=device, batch_size=args.batch)
    t = m.predict(x)
    fwd, fwdbwd = limits(net, x, device, args.repeats)
    rows = [["model forward (limit)", "image", fwd, 1.0], ["model forward+backward (limit)", "image", fwdbwd, 1.0]]

    from captum.attr import LayerGradCam, Occlusion
    layer = net.layer4[1].conv2
    ours = n / median_seconds(lambda: explain.gradcam(m, x, t, layer="layer4.1.conv2"), args.repeats, device)
    lgc = LayerGradCam(net, layer)

    def captum_gc():
        a = lgc.attribute(x, target=t.to(device), relu_attributions=False)
        F.interpolate(a, size=x.shape[2:], mode="bilinear", align_corners=False)

    theirs = n / median_seconds(captum_gc, args.repeats, device)
    rows += [["xaiscope gradcam", "image", ours, ours / fwdbwd], ["captum LayerGradCam", "image", theirs, theirs / fwdbwd]]
    try:
        from pytorch_grad_cam import GradCAM  # needs torchvision
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        gc = GradCAM(model=net, target_layers=[layer])
        targets = [ClassifierOutputTarget(int(c)) for c in t]
        pg = n / median_seconds(lambda: gc(input_tensor=x, targets=targets), args.repeats, device)
        rows.append(["pytorch-grad-cam GradCAM", "image", pg, pg / fwdbwd])
    except Exception as error:  # noqa: BLE001 - the peer is optional here
        rows.append(["pytorch-grad-cam GradCAM", "image", f"not importable ({type(error).__name__})", "-"])

    w = args.window
    p = ((args.size - w) // w + 1) ** 2
    occ_limit = fwd / (p + 1)
    ours = n / median_seconds(lambda: explain.occlusion(m, x, t, window=w, stride=w), args.repeats, device)
    occ = Occlusion(net)
    theirs = n / median_seconds(lambda: occ.attribute(x, sliding_window_shapes=(3, w, w), strides=(3, w, w),
                                                       target=t.to(device), baselines=0.0,
                                                       perturbations_per_eval=p), args.repeats, device)
    rows += [[f"xaiscope occlusion ({p} windows)", "image", ours, ours / occ_limit],
             [f"captum Occlusion ({p} windows, perturbations_per_eval={p})", "image", theirs, theirs / occ_limit]]
    return rows


def bench_sequences(args, device):
    rows = []
    torch.manual_seed(0)
    vocab, length, n = 5000, 64, 64
    net = BiLSTMClassifier(vocab, 2, embed_dim=128, hidden=128).to(device).eval()
    ids = torch.randint(2, vocab, (n, length), device=device)
    m = explain.ModelWrapper(net, "tokens", device=device)
    t = m.predict(ids)
    # The limit is measured at the wrapper's batch size, the size the perturbation passes run at.
    probe = ids.repeat(m.batch_size // n, 1)
    fwd, fwdbwd = limits(net, probe, device, args.repeats, kind="tokens", emb=net.embedding)
    ours = n / median_seconds(lambda: explain.gradcam(m, ids, t), args.repeats, device)
    rows += [["model forward (limit)", "tokens BiLSTM", fwd, 1.0], ["model forward+backward (limit)", "tokens BiLSTM", fwdbwd, 1.0],
             ["xaiscope gradcam", "tokens BiLSTM", ours, ours / fwdbwd]]
    occ = n / median_seconds(lambda: explain.occlusion(m, ids, t), args.repeats, device)
    rows.append([f"xaiscope occlusion ({length} tokens)", "tokens BiLSTM", occ, occ / (fwd / (length + 1))])

    gru = GRUClassifier(3, 4, hidden=64).to(device).eval()
    xs = torch.randn(n, 128, 3, device=device)
    ms = explain.ModelWrapper(gru, "series", device=device)
    ts = ms.predict(xs)
    fwd, fwdbwd = limits(gru, xs.repeat(ms.batch_size // n, 1, 1), device, args.repeats, kind="series")
    ours = n / median_seconds(lambda: explain.gradcam(ms, xs, ts), args.repeats, device)
    occ_p = (128 - 8) // 8 + 1
    occ = n / median_seconds(lambda: explain.occlusion(ms, xs, ts, window=8, stride=8), args.repeats, device)
    rows += [["model forward (limit)", "series GRU", fwd, 1.0], ["model forward+backward (limit)", "series GRU", fwdbwd, 1.0],
             ["xaiscope gradcam", "series GRU", ours, ours / fwdbwd],
             [f"xaiscope occlusion ({occ_p} windows)", "series GRU", occ, occ / (fwd / (occ_p + 1))]]
    return rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--batch", type=int, default=16, help="images per call (default 16)")
    parser.add_argument("--window", type=int, default=16, help="occlusion window = stride (default 16)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = bench_image(args, device) + bench_sequences(args, device)
    print(f"machine: {machine_line(device)}; image {args.size}px batch {args.batch}; medians of {args.repeats} runs\n")
    print(markdown_table(["method", "model", "samples/s", "ratio to limit"], rows))


if __name__ == "__main__":
    main()
