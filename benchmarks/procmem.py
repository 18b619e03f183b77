"""Peak resident memory of the current process on Linux, for the per-case benchmark children.

``reset_peak()`` sets the kernel's high-water mark ``VmHWM`` back to the current resident set
(``/proc/self/clear_refs``), so ``status_kib("VmHWM") - status_kib("VmRSS")`` read after a case
is that case's own peak.
"""

from __future__ import annotations


def status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``); None where unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current resident set; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return status_kib("VmHWM") is not None
