"""Post-synthesis netlist passes on Yosys's JSON, run before nextpnr-ecp5.

Stock Yosys maps a synchronous memory read onto a DP16KD block RAM but leaves the RAM's
own output register unused (``REGMODE NOREG``), so a register the design puts right after
the read stays a fabric flip-flop, and the RAM's clock-to-out (about 5.8 ns on a -6
ECP5) plus routing stands between two flip-flops — most of a 150 MHz cycle.
:func:`absorb_output_registers` moves such a register into the RAM (``REGMODE OUTREG``):
the same cycle of delay, the same value in every cycle, the clock-to-out of a register.

The engine's memory-output registers are reset-less (their first value is the initial 0
and nothing reads them before a read has reached them), which is what makes them
absorbable: the RAM's output register has no reset here and starts at 0, as they do.
"""

from collections import defaultdict

__all__ = ["absorb_output_registers", "absorb_multiplier_registers"]

# A 36-bit-wide DP16KD is the pseudo-dual-port mode: all 36 data outputs belong to the
# read port, clocked by CLKB, and both halves' REGMODE set the one output register.
_PDP_WIDTH = 36
_HALF = 18


def _param_int(value):
    # Yosys writes integer parameters as binary strings, e.g. "00…0100100" for 36
    return int(value, 2) if isinstance(value, str) and value and set(value) <= {"0", "1"} else int(value)


def _param_str(value):
    # Yosys pads a string that could read as binary with one space ("1 "); strip it
    return value.rstrip(" ") if isinstance(value, str) else value


def _read_ports(ram):
    """``[(data port names, clock port, clock mux parameter, REGMODE parameters)]`` of a DP16KD."""
    if _param_int(ram["parameters"].get("DATA_WIDTH_A", "0")) == _PDP_WIDTH:
        outs = [f"DOA{k}" for k in range(_HALF)] + [f"DOB{k}" for k in range(_HALF)]
        return [(outs, "CLKB", "CLKBMUX", "OCEB", ("REGMODE_A", "REGMODE_B"))]
    return [([f"DO{side}{k}" for k in range(_HALF)], f"CLK{side}", f"CLK{side}MUX", f"OCE{side}",
             (f"REGMODE_{side}",)) for side in "AB"]


def _is_plain_register(ff, clock):
    """True for a TRELLIS_FF on ``clock``'s rising edge, always enabled, never set or reset,
    starting at 0 — what a RAM output register with OCE = 1 and RST = 0 is."""
    params = {k: _param_str(v) for k, v in ff["parameters"].items()}
    conn = ff["connections"]
    enabled = params.get("CEMUX", "CE") == "1" or conn.get("CE", ["1"]) == ["1"]
    no_reset = conn.get("LSR", ["0"]) == ["0"] and params.get("LSRMUX", "LSR") == "LSR"
    return (conn.get("CLK") == clock and params.get("CLKMUX", "CLK") == "CLK" and enabled and no_reset
            and params.get("REGSET", "RESET") == "RESET")


def _drivers(cells):
    drivers = {}
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output":
                for bit in bits:
                    if isinstance(bit, int):
                        drivers[bit] = (name, port)
    return drivers


def _sinks(cells):
    sinks = defaultdict(list)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "output":
                for bit in bits:
                    if isinstance(bit, int):
                        sinks[bit].append((name, port))
    return sinks


def _registers_behind(cells, sinks, connections, pins, clock=None):
    """``({pin: flip-flop}, clock)`` when every used pin of ``pins`` feeds exactly one plain
    register and nothing else, all on ``clock`` (or, with None, on one clock they share);
    ``(None, None)`` when any does not or no pin is used."""
    registers = {}
    for pin in pins:
        bits = connections.get(pin)
        if not bits or not isinstance(bits[0], int) or not sinks.get(bits[0]):
            continue                                    # an unused output bit
        users = sinks[bits[0]]
        if len(users) != 1 or users[0][1] != "DI" or cells[users[0][0]]["type"] != "TRELLIS_FF":
            return None, None
        ff = cells[users[0][0]]
        clock = clock or ff["connections"]["CLK"]
        if not _is_plain_register(ff, clock):
            return None, None
        registers[pin] = users[0][0]
    return (registers, clock) if registers else (None, None)


def _port_registers(cells, sinks, ram, outs, clock_port, clock_mux, enable_port):
    """The flip-flop behind each used data bit of one read port, or None if any bit has no
    single plain register behind it (then the port keeps NOREG)."""
    conn = ram["connections"]
    if _param_str(ram["parameters"].get(clock_mux, clock_port)) != clock_port:
        return None                                     # an inverted clock: leave it alone
    if conn.get(enable_port, ["1"]) != ["1"] or conn.get(f"RST{clock_port[-1]}", ["0"]) != ["0"]:
        return None
    return _registers_behind(cells, sinks, conn, outs, conn[clock_port])[0]


def absorb_output_registers(netlist, top):
    """Use the DP16KD output register wherever the design registers a read port's data.

    ``netlist``: Yosys's JSON (a dict, changed in place); ``top``: the module name.
    Returns the number of flip-flops absorbed. A read port is converted whole or not at
    all: every used data bit must feed exactly one flip-flop and nothing else, clocked
    by the port's clock (rising edge), always enabled, never reset, starting at 0.
    """
    cells = netlist["modules"][top]["cells"]
    sinks = _sinks(cells)
    absorbed = 0
    for ram in [c for c in cells.values() if c["type"] == "DP16KD"]:
        for outs, clock_port, clock_mux, enable_port, regmodes in _read_ports(ram):
            if any(_param_str(ram["parameters"].get(r, "NOREG")) != "NOREG" for r in regmodes):
                continue          # its register is in use: the next one along is another cycle
            registers = _port_registers(cells, sinks, ram, outs, clock_port, clock_mux, enable_port)
            if registers is None:
                continue
            for port, ff_name in registers.items():
                ram["connections"][port] = cells.pop(ff_name)["connections"]["Q"]
            for regmode in regmodes:
                ram["parameters"][regmode] = "OUTREG"
            absorbed += len(registers)
    return absorbed


def _input_registers(cells, drivers, sinks, dsp_name, prefix):
    """``{pin: flip-flop}`` for the operand ``prefix`` ('A' or 'B') of a MULT18X18D when
    every non-constant pin is driven by a plain register whose output goes to this
    operand's pins only; None otherwise. Returns the registers' common clock too."""
    dsp = cells[dsp_name]
    registers, clock = {}, None
    for pin in [f"{prefix}{k}" for k in range(18)]:
        bit = dsp["connections"].get(pin, ["0"])[0]
        if not isinstance(bit, int):
            continue                                    # a constant (zero or sign extension)
        name, port = drivers.get(bit, (None, None))
        if port != "Q" or cells[name]["type"] != "TRELLIS_FF":
            return None, None
        ff = cells[name]
        clock = clock or ff["connections"]["CLK"]
        if not _is_plain_register(ff, clock) or any(
                user != dsp_name or not (p.startswith(prefix) and p[1:].isdigit()) for user, p in sinks[bit]):
            return None, None
        registers[pin] = name
    return (registers, clock) if registers else (None, None)


def _clock_dsp(dsp, clock):
    conn, dirs = dsp["connections"], dsp["port_directions"]
    if conn.get("CLK0", ["0"]) not in (["0"], clock):
        return False
    conn.update(CLK0=clock, CE0=["1"], RST0=["0"])
    dirs.update(CLK0="input", CE0="input", RST0="input")
    return True


def absorb_multiplier_registers(netlist, top):
    """Use the MULT18X18D input and output registers wherever the design registers a
    multiplier's operands (both, or neither: nextpnr times mixed modes as unregistered)
    or its product, as :func:`absorb_output_registers` does for block RAMs.

    Returns the number of flip-flops absorbed. Latency is unchanged: the same registers,
    inside the DSP (the pipeline register between them stays bypassed).
    """
    cells = netlist["modules"][top]["cells"]
    absorbed = 0
    for name in [n for n, c in cells.items() if c["type"] == "MULT18X18D"]:
        drivers, sinks = _drivers(cells), _sinks(cells)
        dsp = cells[name]
        ins = [_input_registers(cells, drivers, sinks, name, op) for op in "AB"]
        out, out_clock = _registers_behind(cells, sinks, dsp["connections"], [f"P{k}" for k in range(36)])
        (a_regs, a_clock), (b_regs, b_clock) = ins
        params = {k: _param_str(v) for k, v in dsp["parameters"].items()}
        if any(params.get(f"REG_{reg}_CLK", "NONE") != "NONE" for reg in ("INPUTA", "INPUTB")):
            a_regs = b_regs = None    # registers in use: the next ones along are other cycles
        if params.get("REG_OUTPUT_CLK", "NONE") != "NONE":
            out = None
        if a_regs and b_regs and a_clock == b_clock and _clock_dsp(dsp, a_clock):
            for regs, op in ((a_regs, "A"), (b_regs, "B")):
                for pin, ff_name in regs.items():
                    # every pin on this register's output now takes its input instead
                    q, d = cells[ff_name]["connections"]["Q"], cells[ff_name]["connections"]["DI"]
                    for p in [f"{op}{k}" for k in range(18)]:
                        if dsp["connections"].get(p) == q:
                            dsp["connections"][p] = d
                for ff_name in set(regs.values()):
                    cells.pop(ff_name)
                    absorbed += 1
                dsp["parameters"][f"REG_INPUT{op}_CLK"] = "CLK0"
        if out and _clock_dsp(dsp, out_clock):
            for pin, ff_name in out.items():
                dsp["connections"][pin] = cells.pop(ff_name)["connections"]["Q"]
            dsp["parameters"]["REG_OUTPUT_CLK"] = "CLK0"
            absorbed += len(out)
    return absorbed
