"""What machine a profile was measured on: CPU, cores, memory, OS and the versions of every runtime."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata

RUNTIME_PACKAGES = ("torch", "onnxruntime", "executorch", "coremltools", "timm", "fvcore")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, e.g. under ``taskset``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS), else ``platform``'s guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    """Physical memory in GiB, where the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe_device(threads: int) -> dict:
    """The device entry of a profile; ``threads`` is the thread count every runtime was given."""
    import mcq

    return {
        "cpu": cpu_model(), "arch": platform.machine(), "logical_cores": os.cpu_count(), "usable_cores": usable_cores(),
        "memory_gb": memory_gb(), "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "threads": threads,
        "versions": {"mcq": mcq.__version__, **{p: _version(p) for p in RUNTIME_PACKAGES}},
    }


def device_line(device: dict) -> str:
    """One line for the terminal and the report's head."""
    v = device.get("versions") or {}
    runtimes = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "executorch", "coremltools") if v.get(k))
    details = [device.get("arch") or ""]
    if device.get("usable_cores"):
        details.append(f"{device['usable_cores']} of {device['logical_cores']} cores usable")
    if device.get("memory_gb"):
        details.append(f"{device['memory_gb']:.0f} GiB")
    details = ", ".join(d for d in details if d) + (f"; {device['os']}" if device.get("os") else "")
    threads = f", {device['threads']} threads for every runtime" if device.get("threads") else ""
    return f"{device['cpu']} ({details}){threads}" + (f"; {runtimes}" if runtimes else "")


def device_slug(device: dict) -> str:
    """A folder name for the device's profiles, e.g. ``amd-epyc-1t``."""
    name = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$", "", device["cpu"].lower())
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or device["arch"]
    return f"{name}-{device['threads']}t"
