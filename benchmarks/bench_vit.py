"""Vision Transformer: Grad-CAM and attention maps vs the model's own forward(+backward) throughput.

A ViT-Tiny-shaped model (patch 16, width 192, 12 blocks, 3 heads; the layout of tests/_vit.py,
since timm does not import beside the CPU torch here) at 112 px (49 patches + class token).
Grad-CAM needs one forward and a partial backward per input: its limit is forward+backward
throughput. Attention maps need one forward pass with the unfused attention: their limit is the
forward throughput. Entries are timed round-robin (``interleaved_medians``).

Usage:
    python benchmarks/bench_vit.py [--device cuda] [--repeats 3] [--batch 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
from benchmarks._common import base_parser, interleaved_medians, machine_line, markdown_table  # noqa: E402
from tests._vit import TinyViT  # noqa: E402


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = TinyViT(num_classes=10, patch=16, dim=192, depth=12, heads=3, max_patches=(args.size // 16) ** 2).eval()
    m = explain.ModelWrapper(net, "image", device=device)
    x = torch.rand(args.batch, 3, args.size, args.size)
    xd = x.to(device)

    def forward():
        with torch.no_grad():
            net(xd)

    def forward_backward():
        xg = xd.clone().requires_grad_(True)
        net(xg)[:, 0].sum().backward()
        net.zero_grad(set_to_none=True)

    fns = {"forward": forward, "forward+backward": forward_backward,
           "gradcam": lambda: explain.gradcam(m, x), "attention": lambda: explain.attention(m, x)}
    t = interleaved_medians(fns, args.repeats, device)
    rate = {k: args.batch / v for k, v in t.items()}
    rows = [["model forward (limit)", rate["forward"], 1.0],
            ["model forward+backward (limit)", rate["forward+backward"], 1.0],
            ["xaiscope gradcam (blocks.11.norm1)", rate["gradcam"], rate["gradcam"] / rate["forward+backward"]],
            ["xaiscope attention (12 layers × 3 heads)", rate["attention"], rate["attention"] / rate["forward"]]]
    print(machine_line(device))
    print(markdown_table(["method", "images/s", "ratio to limit"], rows))


if __name__ == "__main__":
    main()
