"""What every reliability test checks: the user's model is exactly as it was."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TINY_LAYERS = ["features.2", "features.5", "features.7"]


def hook_count(model: nn.Module) -> int:
    """Every kind of hook a module can carry, summed over the model."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks")
    return sum(len(getattr(m, k, {})) for m in model.modules() for k in kinds)


@dataclass
class ModelState:
    """A bit-exact record of what explaining must not change."""

    tensors: dict
    training: list
    requires_grad: list
    hooks: int

    @classmethod
    def of(cls, model: nn.Module) -> "ModelState":
        return cls(
            tensors={k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
            training=[m.training for m in model.modules()],
            requires_grad=[p.requires_grad for p in model.parameters()],
            hooks=hook_count(model),
        )

    def assert_same(self, model: nn.Module) -> None:
        now = ModelState.of(model)
        changed = [k for k in self.tensors if not torch.equal(self.tensors[k], now.tensors[k])]
        assert not changed, f"explaining changed parameters/buffers {changed}"
        assert now.training == self.training, "train/eval flags were not restored"
        assert now.requires_grad == self.requires_grad, "requires_grad flags were not restored"
        assert now.hooks == self.hooks, f"hooks left behind: {now.hooks - self.hooks}"
        assert all(p.grad is None for p in model.parameters()), "gradients accumulated in the user's model"


def is_binary(mask: torch.Tensor) -> bool:
    return set(mask.unique().tolist()) <= {0.0, 1.0}
