"""PGD-10 throughput: xaiscope side by side with torchattacks, and against the limit.

The limit: PGD with 10 steps needs 10 forward+backward passes per input, so it cannot beat
(forward+backward throughput ÷ 10). Medians of ``--repeats`` runs in one process.

Usage:
    python benchmarks/bench_attacks.py [--device cuda] [--repeats 3] [--batch 64] [--size 64]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import explain  # noqa: E402
import robustness  # noqa: E402
from benchmarks._common import ResNet18Like, base_parser, interleaved_medians, machine_line, markdown_table  # noqa: E402


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = ResNet18Like().to(device).eval()
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    n, R, k = args.batch, args.repeats, args.steps

    def fwd_bwd():
        xr = x.detach().requires_grad_(True)
        torch.nn.functional.cross_entropy(net(xr), y).backward()

    for q in net.parameters():
        q.requires_grad_(False)
    m = explain.ModelWrapper(net, "image", device=device, batch_size=n)
    import torchattacks
    atk = torchattacks.PGD(net, eps=8 / 255, alpha=2 / 255, steps=k)
    med = interleaved_medians({"limit": fwd_bwd,
                               "ours": lambda: robustness.attack(m, x, y, "pgd", eps=8 / 255, steps=k, alpha=2 / 255),
                               "theirs": lambda: atk(x, y)}, R, device)
    limit, ours, theirs = n / med["limit"] / k, n / med["ours"], n / med["theirs"]
    rows = [[f"model forward+backward ÷ {k} (limit)", limit, 1.0],
            [f"xaiscope PGD-{k}", ours, ours / limit],
            [f"torchattacks PGD-{k}", theirs, theirs / limit]]
    print(f"machine: {machine_line(device)}; ResNet-18-like at {args.size}px, batch {n}; medians of {R} runs\n")
    print(markdown_table(["attack", "images/s", "ratio to limit"], rows))
    print(f"\nxaiscope / torchattacks: {ours / theirs:.2f}×")


if __name__ == "__main__":
    main()
