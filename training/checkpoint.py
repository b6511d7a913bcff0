"""What a training run saves: ``checkpoint.pt`` (the last state, for ``--resume``) and ``best.pt`` (the weights
of the best evaluated model and its step), each written atomically (a kill mid-save leaves the previous file)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

BEST = "best.pt"


def save_best(path: Path, model, step: int, ne: float) -> None:
    """``best.pt``: the weights of the best evaluated model so far (``checkpoint.pt`` stays the last state)."""
    atomic_save(path, {"model": model.state_dict(), "step": step, "eval_ne": ne})


def load_best(path: Path, device: torch.device) -> dict | None:
    return torch.load(path, map_location=device, weights_only=False) if path.exists() else None


def save_checkpoint(path: Path, model, opt, state: dict) -> None:
    atomic_save(path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state})


def atomic_save(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-save leaves the previous file
