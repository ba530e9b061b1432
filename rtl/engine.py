"""The layer engine: a bit-serial popcount-accumulate datapath for one ``dense`` IR layer.

For each group of PE output channels and each weight × input plane pair ``(i, j)``,
SIMD inputs per cycle are ANDed and popcounted, and the integer coefficient product
``Wc[o, i] · Ac[j]`` times ``2·P − S`` ('pm1') or ``P`` ('bin') is accumulated.
Accumulators are ``acc_bits`` wide: two's-complement wrap-around is exact because the
IR proves every final accumulator fits.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

import numpy as np

from export.ir import bit_planes, signed_width

from hwsim.cycles import Folding, layer_timing, popcount_latency
from .popcount import Popcount

__all__ = ["DenseEngine", "level_width"]


def level_width(levels):
    """Bits of a level index in ``[0, levels)``."""
    return max(1, (levels - 1).bit_length())


def _pack(values, width):
    """Little-endian concatenation of integers (two's complement, ``width`` bits each)."""
    mask = (1 << width) - 1
    word = 0
    for k, value in enumerate(values):
        word |= (int(value) & mask) << (k * width)
    return word


class DenseEngine(wiring.Component):
    """One ``dense`` layer of the IR as a streaming engine.

    Members
    -------
    i : ``In(stream.Signature(level_width(in_levels)))``
        Input level indices, one per beat, feature 0 first.
    o : ``Out(stream.Signature(...))``
        One output per beat, channel 0 first: a level index (``threshold`` layers,
        ``unsigned(level_width(out_levels))``) or the accumulator (``accumulate``,
        ``signed(acc_bits)``).

    Timing (no stalls): :func:`hwsim.cycles.layer_timing` — loads ``in_features`` beats,
    then per PE group issues ``K_w·K_a·ceil(I/SIMD)`` cycles, drains the pipeline,
    thresholds in one cycle and emits its channels. Not pipelined across vectors:
    the next vector loads after the last output beat.
    """

    def __init__(self, layer, folding):
        if not isinstance(folding, Folding):
            raise TypeError(f"Engine folding must be a hwsim.cycles.Folding, not {folding!r}")
        self.layer, self.folding = layer, folding
        self.timing = layer_timing(layer, folding)
        self.in_width = level_width(layer.in_levels)
        if layer.output == "threshold":
            self.out_shape = unsigned(level_width(layer.out_levels))
        else:
            self.out_shape = signed(layer.acc_bits)
        super().__init__({
            "i": In(stream.Signature(unsigned(self.in_width))),
            "o": Out(stream.Signature(self.out_shape)),
        })

    # --- memory images ---------------------------------------------------------------

    def _geometry(self):
        f, layer = self.folding, self.layer
        return (layer.out_features, layer.in_features, f.pe, f.simd, -(-layer.in_features // f.simd),
                -(-layer.out_features // f.pe))

    def weight_image(self):
        """Word ``(g·K_w + i)·C + c``: bit ``p·SIMD + s`` = plane i of w[g·PE+p, c·SIMD+s]."""
        o_n, i_n, pe, simd, chunks, groups = self._geometry()
        kw = self.layer.weight_bits
        planes = np.zeros((groups * pe, chunks * simd, kw), np.uint8)
        planes[:o_n, :i_n] = bit_planes(self.layer.weight_code, kw)
        words = []
        for g in range(groups):
            for i in range(kw):
                for c in range(chunks):
                    block = planes[g * pe:(g + 1) * pe, c * simd:(c + 1) * simd, i]
                    words.append(_pack(block.reshape(-1), 1))
        return words

    def coef_width(self):
        prod = np.outer(np.abs(self.layer.weight_coef).max(axis=0), np.abs(self.layer.in_coef)).max()
        return signed_width(-int(prod), int(prod))

    def coef_image(self):
        """Word ``(g·K_w + i)·K_a + j``: lane p holds ``Wc[g·PE+p, i] · Ac[j]``."""
        o_n, _, pe, _, _, groups = self._geometry()
        kw, ka, width = self.layer.weight_bits, self.layer.in_bits, self.coef_width()
        coef = np.zeros((groups * pe, kw), np.int64)
        coef[:o_n] = self.layer.weight_coef
        return [_pack([coef[g * pe + p, i] * self.layer.in_coef[j] for p in range(pe)], width)
                for g in range(groups) for i in range(kw) for j in range(ka)]

    def lane_image(self, per_channel, width):
        o_n, _, pe, _, _, groups = self._geometry()
        padded = np.zeros((groups * pe,) + per_channel.shape[1:], np.int64)
        padded[:o_n] = per_channel
        return [_pack(padded[g * pe:(g + 1) * pe].reshape(-1), width) for g in range(groups)]

    # --- hardware --------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        layer, (o_n, i_n, pe, simd, chunks, groups) = self.layer, self._geometry()
        kw, ka, acc_bits = layer.weight_bits, layer.in_bits, layer.acc_bits
        cw = self.coef_width()
        mems = self._memories(m, cw)

        # --- control state ---
        n = Signal(range(max(i_n, 2)))            # input beat index
        pos = Signal(range(max(simd, 2)))         # position of that beat in its SIMD chunk
        g = Signal(range(max(groups, 2)))         # PE group
        i = Signal(range(max(kw, 2)))             # weight plane
        j = Signal(range(max(ka, 2)))             # input plane
        c = Signal(range(max(chunks, 2)))         # SIMD chunk
        lane = Signal(range(max(pe, 2)))          # output beat within the group
        issue, first, last = Signal(), Signal(), Signal()
        # Running addresses instead of (g·K_w + i)·C + c and (g·K_w + i)·K_a + j: the products
        # would sit on the critical path.
        w_base = Signal(range(max(groups * kw * chunks, 2)))   # (g·K_w + i)·C
        c_addr = Signal(range(max(groups * kw * ka, 2)))       # (g·K_w + i)·K_a + j

        m.d.comb += [mems["code"].addr.eq(self.i.payload), mems["w"].addr.eq(w_base + c),
                     mems["b"].addr.eq(g)]
        if "t" in mems:
            m.d.comb += mems["t"].addr.eq(g)
        for _, rd in mems["planes"]:
            m.d.comb += rd.addr.eq(c)
        # The coefficient address follows the popcount pipeline so that its data, read and
        # then registered once more (off the memory's slow clock-to-out), lines up with the
        # registered popcount term.
        pl = popcount_latency(simd)
        caddr = c_addr
        for k in range(pl):
            nxt = Signal.like(caddr, name=f"caddr_d{k}")
            m.d.sync += nxt.eq(caddr)
            caddr = nxt
        m.d.comb += mems["c"].addr.eq(caddr)

        levels, done = self._datapath(m, mems, issue, first, last, j, pl, cw)
        out_regs = [Signal(self.out_shape, name=f"out{p}") for p in range(pe)]
        shift = [Signal(simd, name=f"shift{jj}") for jj in range(ka)]

        with m.FSM(name="ctrl"):
            with m.State("LOAD"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    full = (pos == simd - 1) | (n == i_n - 1)
                    for jj, (wr, _) in enumerate(mems["planes"]):
                        word = Signal(simd, name=f"word{jj}")
                        m.d.comb += [word.eq(shift[jj] | (mems["code"].data[jj] << pos)),
                                     wr.addr.eq(c), wr.data.eq(word), wr.en.eq(full)]
                        m.d.sync += shift[jj].eq(Mux(full, 0, word))
                    with m.If(full):
                        m.d.sync += [pos.eq(0), c.eq(c + 1)]
                    with m.Else():
                        m.d.sync += pos.eq(pos + 1)
                    with m.If(n == i_n - 1):
                        m.d.sync += [n.eq(0), g.eq(0), i.eq(0), j.eq(0), c.eq(0), w_base.eq(0), c_addr.eq(0)]
                        m.next = "COMPUTE"
                    with m.Else():
                        m.d.sync += n.eq(n + 1)
            with m.State("COMPUTE"):
                m.d.comb += [issue.eq(1), first.eq((i == 0) & (j == 0) & (c == 0)),
                             last.eq((i == kw - 1) & (j == ka - 1) & (c == chunks - 1))]
                with m.If(c == chunks - 1):
                    m.d.sync += [c.eq(0), c_addr.eq(c_addr + 1)]
                    with m.If(j == ka - 1):
                        m.d.sync += [j.eq(0), w_base.eq(w_base + chunks)]
                        with m.If(i == kw - 1):
                            m.d.sync += i.eq(0)
                            m.next = "DRAIN"
                        with m.Else():
                            m.d.sync += i.eq(i + 1)
                    with m.Else():
                        m.d.sync += j.eq(j + 1)
                with m.Else():
                    m.d.sync += c.eq(c + 1)
            with m.State("DRAIN"):
                with m.If(done):
                    m.next = "THRESH"
            with m.State("THRESH"):
                m.d.sync += lane.eq(0)
                m.d.sync += [out_regs[p].eq(levels[p]) for p in range(pe)]
                m.next = "EMIT"
            with m.State("EMIT"):
                last_lane = Signal(range(max(pe, 2)))
                m.d.comb += last_lane.eq(Mux(g == groups - 1, o_n - (groups - 1) * pe - 1, pe - 1))
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(Array(out_regs)[lane])]
                with m.If(self.o.ready):
                    with m.If(lane == last_lane):
                        with m.If(g == groups - 1):
                            m.next = "LOAD"
                        with m.Else():
                            m.d.sync += g.eq(g + 1)
                            m.next = "COMPUTE"
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
        return m

    def _memories(self, m, cw):
        """Code ROM, input plane buffers, weights, coefficients, bias and thresholds."""
        layer, (_, _, pe, simd, chunks, groups) = self.layer, self._geometry()
        kw, ka, acc_bits = layer.weight_bits, layer.in_bits, layer.acc_bits
        # Depths are at least 2: a 1-deep memory gets a 0-bit address, which Verilog cannot spell.
        m.submodules.in_code = rom = Memory(shape=unsigned(ka), depth=max(2, layer.in_levels),
                                            init=[int(x) for x in layer.in_code])
        mems = {"code": rom.read_port(domain="comb"), "planes": []}
        for jj in range(ka):
            plane = Memory(shape=unsigned(simd), depth=max(2, chunks), init=[])
            m.submodules[f"plane{jj}"] = plane
            mems["planes"].append((plane.write_port(), plane.read_port()))
        images = {"w": (unsigned(pe * simd), self.weight_image()),
                  "c": (unsigned(pe * cw), self.coef_image()),
                  "b": (unsigned(pe * acc_bits), self.lane_image(layer.bias, acc_bits))}
        if layer.output == "threshold":
            n_thr = layer.out_levels - 1
            images["t"] = (unsigned(pe * n_thr * acc_bits), self.lane_image(layer.thresholds, acc_bits))
        names = {"w": "weights", "c": "coefs", "b": "bias", "t": "thresholds"}
        for key, (shape, init) in images.items():
            mem = Memory(shape=shape, depth=max(2, len(init)), init=init)
            m.submodules[names[key]] = mem
            mems[key] = mem.read_port()
        return mems

    def _datapath(self, m, mems, issue, first, last, j, pl, cw):
        """AND → popcount → coefficient product → accumulate → thresholds; returns (levels, done)."""
        layer, (_, _, pe, simd, _, _) = self.layer, self._geometry()
        acc_bits = layer.acc_bits
        # stage 1: memory data is valid; the flags follow the data
        v1, f1, l1 = Signal(), Signal(), Signal()
        j1 = Signal.like(j)
        m.d.sync += [v1.eq(issue), f1.eq(first), l1.eq(last), j1.eq(j)]
        a_word = Signal(simd)
        m.d.comb += a_word.eq(Array([rd.data for _, rd in mems["planes"]])[j1])
        m.submodules.pc_s = s_unit = Popcount(simd)
        m.d.comb += s_unit.i.eq(a_word)
        counts = []
        for p in range(pe):
            unit = Popcount(simd)
            m.submodules[f"pc{p}"] = unit
            m.d.comb += unit.i.eq(mems["w"].data[p * simd:(p + 1) * simd] & a_word)
            counts.append(unit.o)
        vd, fd, ld = v1, f1, l1
        for k in range(pl):
            vn, fn, ln = Signal(name=f"v_d{k}"), Signal(name=f"f_d{k}"), Signal(name=f"l_d{k}")
            m.d.sync += [vn.eq(vd), fn.eq(fd), ln.eq(ld)]
            vd, fd, ld = vn, fn, ln
        # stage 2: term = 2·P − S ('pm1') or P ('bin'), registered
        vt, ft, lt = Signal(), Signal(), Signal()
        m.d.sync += [vt.eq(vd), ft.eq(fd), lt.eq(ld)]
        count_shape = signed(simd.bit_length() + 2)
        s_signed = Signal(count_shape)
        m.d.comb += s_signed.eq(s_unit.o)
        terms = []
        for p in range(pe):
            term = Signal(count_shape, name=f"term{p}")
            if layer.weight_encoding == "pm1":
                m.d.sync += term.eq(counts[p] * 2 - s_signed)
            else:
                m.d.sync += term.eq(counts[p])
            terms.append(term)
        coef_word = Signal(pe * cw)
        m.d.sync += coef_word.eq(mems["c"].data)
        # stage 3: product = Wc·Ac · term, registered (wraps modulo 2**acc_bits, exactly)
        v2, f2, l2 = Signal(), Signal(), Signal()
        m.d.sync += [v2.eq(vt), f2.eq(ft), l2.eq(lt)]
        prods = []
        for p in range(pe):
            coef = coef_word[p * cw:(p + 1) * cw].as_signed()
            prod = Signal(signed(acc_bits), name=f"prod{p}")
            m.d.sync += prod.eq(coef * terms[p])
            prods.append(prod)
        # stage 4: accumulate; `done` is high while the last product is being added
        accs = [Signal(signed(acc_bits), name=f"acc{p}") for p in range(pe)]
        for p in range(pe):
            bias = mems["b"].data[p * acc_bits:(p + 1) * acc_bits].as_signed()
            with m.If(v2):
                m.d.sync += accs[p].eq(Mux(f2, bias, accs[p]) + prods[p])
        done = Signal()
        m.d.comb += done.eq(v2 & l2)
        if "t" not in mems:
            return accs, done
        n_thr = layer.out_levels - 1
        levels = []
        for p in range(pe):
            hits = [accs[p] >= mems["t"].data[(p * n_thr + k) * acc_bits:(p * n_thr + k + 1) * acc_bits].as_signed()
                    for k in range(n_thr)]
            level = Signal(range(n_thr + 1), name=f"level{p}")
            m.d.comb += level.eq(sum(hits))
            levels.append(level)
        return levels, done
