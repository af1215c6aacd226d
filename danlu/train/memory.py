"""The peak memory of a piece of training, measured: on a GPU by PyTorch's allocator, on a CPU by the
kernel's high-water mark of the process (reset first), so `danlu estimate` can be checked against it.

Why the kernel's figure on a CPU: PyTorch keeps no statistics for CPU tensors, and the high-water
mark (VmHWM) is the true peak the machine had to hold. What the process held before (Python, the
libraries, the data) is subtracted; the model's weights, already resident then, are added back, so
the figure is what the training itself needs: weights, gradients, optimizer state and activations.
"""

from __future__ import annotations

from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_free_heap() -> None:
    """glibc's malloc_trim: memory freed earlier (the data's encoding, loading the model) goes back to
    the system, so what the training allocates raises the resident size instead of reusing it."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measure may then read low
        pass


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())


class PeakMemory:
    """`with PeakMemory(model) as peak: ...`; then `peak.bytes` (None where it cannot be measured) and
    `peak.how` (what was measured)."""

    def __init__(self, model=None):
        self.model = model
        self.bytes: int | None = None
        self.how = ""

    def __enter__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = 0  # the model is moved to the GPU inside: every byte there is the training's
            return self
        self.resident = 0 if self.model is None else weight_bytes(self.model)
        _release_free_heap()  # else the training reuses freed pages and the high-water mark never sees it
        try:
            _CLEAR.write_text("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
            self.base = _status_kb("VmRSS")
        except OSError:
            self.base = None
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = int(torch.cuda.max_memory_allocated())
            self.how = "GPU: torch.cuda.max_memory_allocated"
            return False
        peak = _status_kb("VmHWM")
        if self.base is not None and peak is not None:
            self.bytes = (peak - self.base) * 1024 + self.resident
            self.how = "CPU: the process's peak resident memory during training less what it held before, plus the weights"
        return False
