"""The post-synthesis netlist passes (rtl/netlist.py) on hand-built Yosys JSON netlists:
what they absorb, and everything they must leave alone."""

import copy

import pytest

from rtl.netlist import absorb_multiplier_registers, absorb_output_registers

CLK, RST, OTHER_CLK, ENABLE = 2, 3, 4, 5
PLAIN = {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET"}


class Netlist:
    """A flat Yosys JSON netlist built cell by cell; net ids count up from 100."""

    def __init__(self):
        self.cells, self.next_net = {}, 100

    def net(self):
        self.next_net += 1
        return self.next_net

    def ff(self, d, clk=CLK, ce=None, lsr=None, **params):
        q = self.net()
        conn = {"CLK": [clk], "DI": [d], "Q": [q], "LSR": [lsr if lsr is not None else "0"]}
        if ce is not None:
            conn["CE"] = [ce]
            params.setdefault("CEMUX", "CE")
        self.cells[f"ff{q}"] = {"type": "TRELLIS_FF", "parameters": PLAIN | params, "connections": conn,
                                "port_directions": {"CLK": "input", "DI": "input", "LSR": "input", "CE": "input",
                                                    "Q": "output"}}
        return q

    def lut(self, *inputs):
        z = self.net()
        conn = {f"{'ABCD'[k]}": [b] for k, b in enumerate(inputs)} | {"Z": [z]}
        self.cells[f"lut{z}"] = {"type": "LUT4", "parameters": {}, "connections": conn,
                                 "port_directions": {p: "output" if p == "Z" else "input" for p in conn}}
        return z

    def ram(self, width=36, **conn):
        outs = {f"DO{side}{k}": [self.net()] for side in "AB" for k in range(18)}
        params = {"DATA_WIDTH_A": format(width, "032b"), "DATA_WIDTH_B": format(width, "032b"),
                  "CLKAMUX": "CLKA", "CLKBMUX": "CLKB", "REGMODE_A": "NOREG", "REGMODE_B": "NOREG"}
        ports = {"CLKA": [CLK], "CLKB": [CLK], "OCEA": ["1"], "OCEB": ["1"], "RSTA": ["0"], "RSTB": ["0"]} | conn
        cell = {"type": "DP16KD", "parameters": params, "connections": ports | outs,
                "port_directions": {p: "output" if p.startswith("DO") else "input" for p in ports | outs}}
        self.cells[f"ram{len(self.cells)}"] = cell
        return cell

    def dsp(self, a, b):
        """A multiplier of the bits ``a`` and ``b`` (each padded to 18 with its last bit)."""
        pins = {f"A{k}": [a[min(k, len(a) - 1)]] for k in range(18)}
        pins |= {f"B{k}": [b[min(k, len(b) - 1)]] for k in range(18)}
        pins |= {f"P{k}": [self.net()] for k in range(36)} | {"SIGNEDA": ["1"], "SIGNEDB": ["1"]}
        cell = {"type": "MULT18X18D", "parameters": {}, "connections": pins,
                "port_directions": {p: "output" if p.startswith("P") else "input" for p in pins}}
        self.cells[f"dsp{len(self.cells)}"] = cell
        return cell

    def json(self):
        return {"modules": {"top": {"cells": self.cells, "netnames": {}}}}


def registered_outputs(n, cell, ports, **ff_params):
    """A flip-flop behind each of ``ports``, and a LUT reading each flip-flop."""
    qs = {}
    for port in ports:
        qs[port] = n.ff(cell["connections"][port][0], **ff_params)
        n.lut(qs[port])
    return qs


def test_pdp_ram_read_register_moves_into_the_ram():
    n = Netlist()
    ram = n.ram(36)
    ports = [f"DOA{k}" for k in range(18)] + [f"DOB{k}" for k in range(12)]   # 6 bits unused
    qs = registered_outputs(n, ram, ports)
    netlist = n.json()
    assert absorb_output_registers(netlist, "top") == 30
    cells = netlist["modules"]["top"]["cells"]
    assert [c for c in cells.values() if c["type"] == "TRELLIS_FF"] == []
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"
    for port, q in qs.items():
        assert ram["connections"][port] == [q]                 # the LUTs now read the RAM
    assert absorb_output_registers(netlist, "top") == 0        # nothing left to absorb


def test_true_dual_port_halves_are_separate():
    n = Netlist()
    ram = n.ram(18)
    registered_outputs(n, ram, [f"DOA{k}" for k in range(18)])
    registered_outputs(n, ram, [f"DOB{k}" for k in range(4)], lsr=RST)      # port B's register resets
    netlist = n.json()
    assert absorb_output_registers(netlist, "top") == 18
    assert (ram["parameters"]["REGMODE_A"], ram["parameters"]["REGMODE_B"]) == ("OUTREG", "NOREG")
    assert sum(c["type"] == "TRELLIS_FF" for c in netlist["modules"]["top"]["cells"].values()) == 4


def test_a_second_run_leaves_the_next_register_in_the_fabric():
    """Registered twice (as the engine's bias and thresholds are): only the first register
    moves, and running the pass again must not move the second one (a cycle would be lost)."""
    n = Netlist()
    ram = n.ram(36)
    first = {port: n.ff(ram["connections"][port][0]) for port in ("DOA0", "DOA1")}
    second = [n.ff(q) for q in first.values()]
    n.dsp([n.ff(n.net())], [n.ff(n.net())])
    dsp = next(c for c in n.cells.values() if c["type"] == "MULT18X18D")
    n.ff(n.ff(dsp["connections"]["P0"][0]))             # the product, registered twice
    netlist = n.json()
    assert absorb_output_registers(netlist, "top") == 2 and absorb_multiplier_registers(netlist, "top") == 3
    assert [ram["connections"][p] for p in first] == [[q] for q in first.values()]
    after = copy.deepcopy(netlist)
    assert absorb_output_registers(netlist, "top") == 0 and absorb_multiplier_registers(netlist, "top") == 0
    assert netlist == after and len(second) == 2


@pytest.mark.parametrize("case", ["enable", "other clock", "reset", "set", "inverted clock", "second reader",
                                  "ram reset", "ram clock inverted", "one bit not registered"])
def test_ram_registers_that_are_not_plain_stay(case):
    n = Netlist()
    ram = n.ram(36, **({"RSTB": [RST]} if case == "ram reset" else {}))
    if case == "ram clock inverted":
        ram["parameters"]["CLKBMUX"] = "INV"
    ports = [f"DOA{k}" for k in range(8)]
    params = {"enable": {"ce": ENABLE}, "other clock": {"clk": OTHER_CLK}, "reset": {"lsr": RST},
              "set": {"REGSET": "SET"}, "inverted clock": {"CLKMUX": "INV"}}.get(case, {})
    registered_outputs(n, ram, ports[:-1], **params)
    last = ram["connections"][ports[-1]][0]
    if case == "second reader":
        n.ff(last), n.lut(last)
    elif case == "one bit not registered":
        n.lut(last)
    else:
        n.ff(last, **params)
    netlist = n.json()
    before = copy.deepcopy(netlist)
    assert absorb_output_registers(netlist, "top") == 0
    assert netlist == before


def dsp_with_registers(n, in_params=None, out_params=None, a_extra_reader=False, p_bits=16):
    a = [n.ff(n.net(), **(in_params or {})) for _ in range(6)]
    b = [n.ff(n.net()) for _ in range(9)]
    if a_extra_reader:
        n.lut(a[0])
    dsp = n.dsp(a, b)
    products = [n.ff(dsp["connections"][f"P{k}"][0], **(out_params or {})) for k in range(p_bits)]
    for q in products:
        n.lut(q)
    return dsp, a, b, products


def test_multiplier_operand_and_product_registers_move_into_the_dsp():
    n = Netlist()
    dsp, a, b, products = dsp_with_registers(n)
    drivers = {q: name for name, c in n.cells.items() if c["type"] == "TRELLIS_FF" for q in c["connections"]["Q"]}
    d_of = {q: n.cells[drivers[q]]["connections"]["DI"][0] for q in a + b}
    netlist = n.json()
    assert absorb_multiplier_registers(netlist, "top") == 6 + 9 + 16
    assert [c for c in netlist["modules"]["top"]["cells"].values() if c["type"] == "TRELLIS_FF"] == []
    params, conn = dsp["parameters"], dsp["connections"]
    assert (params["REG_INPUTA_CLK"], params["REG_INPUTB_CLK"], params["REG_OUTPUT_CLK"]) == ("CLK0",) * 3
    assert (conn["CLK0"], conn["CE0"], conn["RST0"]) == ([CLK], ["1"], ["0"])
    # the pins read the registers' inputs now, the sign extension included
    assert [conn[f"A{k}"][0] for k in range(18)] == [d_of[a[min(k, 5)]] for k in range(18)]
    assert [conn[f"B{k}"][0] for k in range(18)] == [d_of[b[min(k, 8)]] for k in range(18)]
    assert [conn[f"P{k}"][0] for k in range(16)] == products


@pytest.mark.parametrize("case", ["operand read elsewhere", "operand enabled", "operand reset"])
def test_dsp_operands_move_together_or_not_at_all(case):
    n = Netlist()
    in_params = {"operand enabled": {"ce": ENABLE}, "operand reset": {"lsr": RST}}.get(case)
    dsp, *_ = dsp_with_registers(n, in_params=in_params, a_extra_reader=case == "operand read elsewhere")
    netlist = n.json()
    assert absorb_multiplier_registers(netlist, "top") == 16           # the product only
    assert "REG_INPUTA_CLK" not in dsp["parameters"] and "REG_INPUTB_CLK" not in dsp["parameters"]
    assert dsp["parameters"]["REG_OUTPUT_CLK"] == "CLK0"


def test_dsp_product_read_twice_stays():
    n = Netlist()
    dsp, *_ = dsp_with_registers(n)
    n.lut(dsp["connections"]["P3"][0])                 # the raw product is read by logic too
    netlist = n.json()
    assert absorb_multiplier_registers(netlist, "top") == 6 + 9
    assert "REG_OUTPUT_CLK" not in dsp["parameters"]
