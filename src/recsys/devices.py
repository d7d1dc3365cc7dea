"""Which torch device a command computes on: one rule for evaluation and serving."""

from __future__ import annotations

import torch


def resolve_device(wanted: str | None) -> torch.device:
    """`auto` (or empty): the GPU when torch sees one, else the CPU; otherwise a torch device
    name (cpu, cuda, cuda:1). Asking for CUDA where torch has none is an error, not a silent
    fall-back to the CPU."""
    if not wanted or wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError as err:
        raise ValueError(f"'{wanted}' is not a device: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"'{wanted}' asks for CUDA, but this torch build sees no CUDA device")
    return device
