"""A small Vision Transformer laid out like timm's (patch conv, class token, pre-norm blocks with
``norm1``/``attn``/``norm2``/``mlp``, final norm, head on the class token), and a planted-image
data set where the evidence sits in one known patch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, channels: int, dim: int) -> None:
        super().__init__()
        self.patch_size = (patch, patch)
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """timm's layout: one ``qkv`` linear, ``fused_attn`` switch, ``attn_drop`` after the softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            x = self.attn_drop(attn) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """``N×C×H×W`` → ``N×K``; ``H`` and ``W`` multiples of ``patch`` (any grid up to ``max_patches``)."""

    def __init__(self, num_classes: int = 2, channels: int = 3, patch: int = 8, dim: int = 32, depth: int = 2,
                 heads: int = 2, max_patches: int = 64) -> None:
        super().__init__()
        self.num_prefix_tokens = 1
        self.patch_embed = PatchEmbed(patch, channels, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + max_patches, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + self.pos_embed[:, : tokens.shape[1]]
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def planted_patches(n: int, size: int = 32, patch: int = 8, seed: int = 0):
    """Noise images; class 1 has a bright square filling one random patch cell, class 0 a dark one.

    Returns ``(x, y, mask)``: ``N×3×size×size`` in [0, 1], labels, and the planted patch as a mask.
    """
    gen = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.1 * torch.randn(n, 3, size, size, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    cells = size // patch
    where = torch.randint(0, cells, (n, 2), generator=gen)
    for i in range(n):
        r, c = (int(v) * patch for v in where[i])
        x[i, :, r:r + patch, c:c + patch] = 1.0 if y[i] == 1 else 0.0
        mask[i, r:r + patch, c:c + patch] = True
    return x.clamp(0, 1), y, mask
