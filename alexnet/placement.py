"""Where the two towers live, and the one place where they talk (§3.2).

§3.2: "the GPUs communicate only in certain layers": conv3 reads all kernel
maps of conv2 (both towers), and so do fc6, fc7 and fc8 with the layer below
(and 1 CNN*'s conv6 with pool3, in the 2012 code).
`exchange` is the only function in the project that moves activations between
towers, so the traffic can be counted, tested and later overlapped.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

DeviceLike = str | torch.device


def default_devices() -> tuple[torch.device, torch.device]:
    """Two GPUs → (cuda:0, cuda:1), the paper's layout; one GPU → both towers
    on cuda:0; no GPU → both on the CPU."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n >= 2:
        return torch.device("cuda:0"), torch.device("cuda:1")
    if n == 1:
        return torch.device("cuda:0"), torch.device("cuda:0")
    return torch.device("cpu"), torch.device("cpu")


def device_name(device: torch.device) -> str:
    """The device as benchmark files and the compute plan name it: the GPU's name, or "CPU (N cores)"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"


def check_device(device: DeviceLike) -> torch.device:
    """A `torch.device`, or a ValueError that says what exists on this machine."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a device name ({e}); "
                         "use e.g. cpu, cuda:0, cuda:1") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if dev.index is None else dev.index
        if index >= n:
            have = ", ".join(f"cuda:{i}" for i in range(n)) or "none"
            raise ValueError(f"device {device!r} does not exist: CUDA devices here: {have}; "
                             "use --devices cpu,cpu to run on the CPU")
        dev = torch.device("cuda", index)
    return dev


def resolve_devices(devices: Sequence[DeviceLike] | str | None) -> tuple[torch.device, torch.device]:
    """A pair of devices from None (→ `default_devices()`), one device for both
    towers, or "cuda:0,cuda:1"; each is checked to exist."""
    if devices is None:
        return default_devices()
    if isinstance(devices, (str, torch.device)):
        devices = [d for d in str(devices).split(",") if d] if isinstance(devices, str) else [devices]
    devices = list(devices)
    if len(devices) == 1:
        devices = devices * 2
    if len(devices) != 2:
        raise ValueError(f"devices={devices!r}: give one device or a pair (tower 0, tower 1)")
    return check_device(devices[0]), check_device(devices[1])


def exchange(tensors: Sequence[torch.Tensor], device: torch.device, *, at: str) -> torch.Tensor:
    """Bring every tower's activations to `device` and concatenate them along
    the channel/feature dimension (dim 1), in tower order.

    `at` names the connection point ("conv3", "fc6", "fc7", "fc8"; "conv6" in
    1 CNN*); the model calls this function there and nowhere else.
    """
    # A non-blocking copy *to* the CPU could be read before it lands; only
    # copies into a GPU are queued asynchronously.
    non_blocking = device.type == "cuda"
    return torch.cat([t.to(device, non_blocking=non_blocking) for t in tensors], dim=1)
