"""Token-id facts of ``ModelWrapper``: the pad id, the attention-mask keyword, special tokens."""

from __future__ import annotations

from typing import Optional

import torch

from .errors import InputShapeError, UnsupportedModelError


class TokenIds:
    """Mixin: which token ids are padding or special, and how the attention mask is passed."""

    def _pick_pad_id(self, pad_id: Optional[int]) -> int:
        if pad_id is not None:
            return int(pad_id)
        config_pad = getattr(getattr(self.model, "config", None), "pad_token_id", None) if self.call.hf else None
        return int(config_pad) if config_pad is not None else 0

    def _pick_mask_arg(self, mask_arg: Optional[str]) -> Optional[str]:
        if mask_arg is None or mask_arg in ("", "none", "None", False):
            return None
        if self.input_kind != "tokens":
            if mask_arg == "auto":
                return None
            raise InputShapeError(f"mask_arg={mask_arg!r} is for token models; this wrapper's input_kind is "
                                  f"{self.input_kind!r}")
        if mask_arg == "auto":
            return "attention_mask" if self.call.hf and "attention_mask" in self.call.params else None
        if not self.call.accepts(mask_arg):
            raise UnsupportedModelError(
                f"mask_arg={mask_arg!r}: {type(self.model).__name__}.forward has no parameter of that name; it "
                f"accepts {', '.join(self.call.params) or 'one positional input'} — pass one of these, or mask_arg=None")
        return str(mask_arg)

    def special_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """``True`` where a token id must keep its value under perturbations: padding and special tokens.

        Shape:
            ``ids``: ``N×T`` → ``N×T`` bool, on ``ids``' device.
        """
        keep = ids == self.pad_id
        for i in self.special_ids:
            keep |= ids == i
        return keep

    def baseline_ids(self, ids: torch.Tensor, fill: Optional[int] = None) -> torch.Tensor:
        """``ids`` with every token replaced by ``fill`` (default ``pad_id``) except padding and special tokens.

        Shape:
            ``ids``: ``N×T`` → ``N×T``.
        """
        fill = self.pad_id if fill is None else int(fill)
        return torch.where(self.special_mask(ids), ids, torch.full_like(ids, fill))
