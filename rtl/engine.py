"""The layer engine: a streaming, bit-serial popcount datapath for one ``dense`` IR layer.

Three processes run side by side (their schedule is :mod:`hwsim.cycles`, exactly):

* **loader** — ``in_lanes`` level indices per beat (registered on arrival), through the ``in_code`` ROM, into the
  per-input-plane bit buffers of one of two banks (ping-pong), while compute reads the
  other; for ``pm1`` weights it also sums the input values ``V = Σ_n value_in[x_n]``;
* **compute** — per PE group, per weight plane ``i`` the group uses, per SIMD chunk:
  PE weight-plane words AND every input plane ``j``, popcounts ``P_ij`` (pipelined
  trees), weighed by the layer's input coefficients with constant shifts and adds
  (``R_i = Σ_j Ac[j]·P_ij``, no multiplier), summed over the chunks into one of the
  sum buffers;
* **finalizer** — ``out_lanes`` units; per block of ``out_lanes`` channels, per weight
  plane: ``acc += Wc[o, i] · (2·R_i − V)`` ('pm1') or ``Wc[o, i] · R_i`` ('bin') — the
  only multiplier, once per output and weight plane — then thresholds → one output beat
  into the engine's output FIFO.

Accumulators are ``acc_bits`` wide: two's-complement wrap-around is exact because the
IR proves every final accumulator fits.
"""

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwsim.cycles import SUM_BUFFERS, WEIGHT_BANK, Folding, engine_schedule, plane_sum_terms, weight_banks
from lqir import bits_for_levels, input_values

from .adders import pipelined_sum
from .fifo import StreamFifo, occupancy, ring_next
from .images import EngineGeometry, block_image, coef_image, weight_image
from .popcount import POPCOUNT_PREFIX, Popcount

__all__ = ["DenseEngine", "BLOCK_RAM_MEMORIES"]


#: Memories that synthesis puts in block RAM however shallow they are (rtl/synth.py finds
#: them by these name patterns): a 16×4 LUT RAM takes six LUT4 sites, a ROM mapped to logic
#: a LUT4 per few bits, and block RAM is what these designs leave over. The two written
#: ones (input planes, plane sums) are ping-pong buffers: a read of a word written in the
#: same cycle is never used, so synthesis need not order the two (``no_rw_check``).
BLOCK_RAM_MEMORIES = ("weights*", "plane*", "sums", "coefs", "bias", "thresholds")


def _mem(m, name, shape, init):
    # Depths are at least 2: a 1-deep memory gets a 0-bit address, which Verilog cannot spell.
    mem = Memory(shape=shape, depth=max(2, len(init)), init=init)
    m.submodules[name] = mem
    return mem


class DenseEngine(wiring.Component):
    """One ``dense`` layer of the IR as a streaming engine.

    Members
    -------
    i : ``In(stream.Signature(unsigned(in_lanes · bits_for_levels(in_levels + pad))))``
        Input level indices, ``in_lanes`` per beat (lane l in bits ``[l·w, (l+1)·w)``),
        feature 0 first; the last beat of a vector may be partly empty. With ``pad``,
        index ``in_levels`` is a padded convolution tap: code 0, value 0.
    o : ``Out(stream.Signature(unsigned(out_lanes · field)))``
        Output values, ``out_lanes`` per beat, channel 0 first: level indices
        (``threshold`` layers, ``bits_for_levels(out_levels)`` bits each) or accumulators
        (``accumulate``, ``acc_bits`` two's complement each).

    Timing: :func:`hwsim.cycles.layer_timing` (latency and initiation interval) and
    :class:`hwsim.cycles.EngineModel` (cycle by cycle, under any stalls).
    """

    def __init__(self, layer, folding, pad=False):
        if not isinstance(folding, Folding):
            raise TypeError(f"Engine folding must be a hwsim.cycles.Folding, not {folding!r}")
        self.layer, self.folding, self.pad = layer, folding, bool(pad)
        self.schedule = engine_schedule(layer, folding)
        self.geometry = geo = EngineGeometry.of(layer, folding, self.pad)
        self.field = (bits_for_levels(layer.out_levels) if layer.output == "threshold" else layer.acc_bits)
        super().__init__({
            "i": In(stream.Signature(unsigned(folding.in_lanes * geo.in_width))),
            "o": Out(stream.Signature(unsigned(folding.out_lanes * self.field))),
        })

    @property
    def pm1(self):
        return self.layer.weight_encoding == "pm1"

    def elaborate(self, platform):
        m = Module()
        geo = self.geometry
        full_set, full_clr = Signal(2), Signal(2)          # input banks
        full = Signal(2)
        m.d.sync += full.eq((full | full_set) & ~full_clr)
        # A sum buffer is busy from compute's first issue into it, and full from its last
        # write, until the finalizer has read it (busy until the cycle after: the release is
        # registered, so the finalizer's step logic does not reach compute's issue in one
        # cycle). Buffers are claimed, written and read in ring order: two counts
        # (occupancy: "all busy", "some full") stand for the per-buffer flags.
        sums_set, sums_read, sums_claim, sums_release = Signal(), Signal(), Signal(), Signal()
        m.d.sync += sums_release.eq(sums_read)
        _, _, all_busy = occupancy(m, sums_claim, sums_release, SUM_BUFFERS, "busy")
        _, some_full, _ = occupancy(m, sums_set, sums_read, SUM_BUFFERS, "full")
        planes = [_mem(m, f"plane{j}", unsigned(geo.simd), [0] * (2 * geo.chunks))
                  for j in range(self.layer.in_bits)]
        sums = _mem(m, "sums", unsigned(geo.pe * geo.sum_width), [0] * (SUM_BUFFERS * self.layer.weight_bits))
        v_bank = [Signal(signed(geo.value_width), name=f"v_bank{b}") for b in range(2)]
        # V of each sum buffer's group (the vector's input value sum): a LUT RAM written at
        # the claim, read by the finalizer (16 registers and a 16-way multiplexer otherwise)
        v_buf = _mem(m, "group_values", signed(geo.value_width), [0] * SUM_BUFFERS)
        self._loader(m, planes, full, full_set, v_bank)
        self._compute(m, planes, full, full_clr, sums, (all_busy, sums_claim), sums_set, v_bank, v_buf)
        self._finalizer(m, sums, (some_full, sums_read), v_buf)
        return m

    # --- loader --------------------------------------------------------------------------

    def _loader(self, m, planes, full, full_set, v_bank):
        geo, layer, lanes = self.geometry, self.layer, self.folding.in_lanes
        ka, slots = layer.in_bits, geo.simd // lanes
        # The input beat is registered first: the producer's FIFO output is combinational.
        held_beat, held_valid, take = Signal.like(self.i.payload), Signal(), Signal()
        wb = Signal()                                       # bank being written
        m.d.comb += [take.eq(held_valid & ~full.bit_select(wb, 1)), self.i.ready.eq(~held_valid | take)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held_beat.eq(self.i.payload), held_valid.eq(1)]
        with m.Elif(take):
            m.d.sync += held_valid.eq(0)
        rom = _mem(m, "in_code", unsigned(ka), [int(c) for c in layer.in_code] + [0] * self.pad)
        codes = []
        for lane in range(lanes):
            port = rom.read_port(domain="comb")
            m.d.comb += port.addr.eq(held_beat[lane * geo.in_width:(lane + 1) * geo.in_width])
            codes.append(port.data)
        beat = Signal(range(max(2, self.schedule.in_beats)))
        slot = Signal(range(max(2, slots)))                 # beat position within its SIMD chunk
        chunk = Signal(range(max(2, geo.chunks)))
        # "this beat is a vector's last" and "… ends a chunk" are registers kept one take
        # ahead, not compares: they gate every bit of the loader, so they start the cycle
        beats = self.schedule.in_beats
        last_beat, chunk_end = Signal(init=beats == 1), Signal(init=slots == 1 or beats == 1)
        next_last = Mux(last_beat, beats == 1, beat == beats - 2)
        with m.If(take):
            m.d.sync += [last_beat.eq(next_last),
                         chunk_end.eq(Mux(chunk_end, slots == 1, slot == slots - 2) | next_last)]
        tail = geo.in_features - (beats - 1) * lanes            # lanes used by the last beat
        valid = [C(1) if lane < tail else ~last_beat for lane in range(lanes)]
        for j, mem in enumerate(planes):
            # A shift register, no multiplexer: each beat enters at the top, so a full chunk's
            # first beat ends at bit 0 (a short last chunk ends geo.last_shift bits higher,
            # as its weights do; the bits below it are stale and meet weight bits 0).
            held = Signal(geo.simd, name=f"held{j}", reset_less=True)
            shifted = Cat(held[lanes:], *[codes[lane][j] & valid[lane] for lane in range(lanes)])
            port = mem.write_port()
            m.d.comb += [port.addr.eq(Mux(wb, geo.chunks, 0) + chunk), port.data.eq(shifted),
                         port.en.eq(take & chunk_end)]
            with m.If(take):
                m.d.sync += held.eq(shifted)
        with m.If(take):
            m.d.sync += [slot.eq(Mux(chunk_end, 0, slot + 1)), chunk.eq(Mux(chunk_end, chunk + 1, chunk)),
                         beat.eq(beat + 1)]
            with m.If(last_beat):
                m.d.sync += [wb.eq(~wb), beat.eq(0), chunk.eq(0)]
                m.d.comb += full_set.eq(Mux(wb, 0b10, 0b01))
        if self.pm1:
            self._value_sum(m, held_beat, take, last_beat, valid, wb, v_bank)

    def _value_sum(self, m, beat_word, take, last_beat, valid, wb, v_bank):
        """``V = Σ_n value_in[x_n]`` of the vector being loaded, into ``v_bank[wb]`` a cycle
        after its last beat: a beat's lane values are summed and registered first, then
        added to the running sum (ROM reads, a lanes-operand add and the running add in one
        cycle were the slowest path of multi-lane foldings). Compute writes V down a cycle
        after its claim (``_compute``), so the bank's V is there in time."""
        geo, lanes = self.geometry, self.folding.in_lanes
        rom = _mem(m, "in_value", signed(geo.value_width), [int(v) for v in input_values(self.layer)] + [0] * self.pad)
        beat_sum = 0
        for lane in range(lanes):
            port = rom.read_port(domain="comb")
            m.d.comb += port.addr.eq(beat_word[lane * geo.in_width:(lane + 1) * geo.in_width])
            beat_sum = beat_sum + Mux(valid[lane], port.data, 0)
        beat_value = Signal(signed(geo.value_width))
        added, added_last, added_bank = Signal(), Signal(), Signal()
        m.d.sync += [added.eq(take), added_last.eq(take & last_beat)]
        with m.If(take):
            m.d.sync += [beat_value.eq(beat_sum), added_bank.eq(wb)]
        running = Signal(signed(geo.value_width))
        total = Signal(signed(geo.value_width))
        m.d.comb += total.eq(running + beat_value)
        with m.If(added):
            m.d.sync += running.eq(Mux(added_last, 0, total))
            with m.If(added_last):
                for b in range(2):
                    with m.If(added_bank == b):
                        m.d.sync += v_bank[b].eq(total)

    # --- compute -------------------------------------------------------------------------

    def _compute(self, m, planes, full, full_clr, sums, busy_flags, sums_set, v_bank, v_buf):
        busy_now, sums_claim = busy_flags    # busy_now: the buffer wb is in use (all are)
        geo, layer = self.geometry, self.layer
        words = weight_image(layer, geo)
        w_addr = Signal(range(max(2, len(words))))
        w_word = self._weight_words(m, words, w_addr)
        a_rd = [mem.read_port() for mem in planes]
        rb = Signal()                                   # bank being read
        g = Signal(range(max(2, geo.groups)))
        plane = Signal(range(max(2, layer.weight_bits)))  # count of the group's planes issued
        chunk = Signal(range(max(2, geo.chunks)))
        wb = Signal(range(SUM_BUFFERS))                 # sum buffer of the group being issued
        w_base = Signal(range(max(2, len(words))))      # weight word of (g, plane, chunk 0)
        v_cur = Signal(signed(geo.value_width))
        last_plane = Array([C(len(p) - 1, range(max(2, layer.weight_bits))) for p in geo.planes])[g]
        # "a group starts here" (plane 0, chunk 0) and "… the vector's first" are registers
        # kept one issue ahead, not compares: they gate the issue, which fans out widely
        starting, first_group = Signal(init=1), Signal(init=1)
        ready = (~first_group | full.bit_select(rb, 1)) & ~busy_now
        issue = Signal()
        m.d.comb += [issue.eq(~starting | ready), w_addr.eq(w_base + chunk)]
        for port in a_rd:
            m.d.comb += port.addr.eq(Mux(rb, geo.chunks, 0) + chunk)
        # "last chunk", "last plane of the group", "last group" as registers too, kept one
        # step ahead
        n_planes = [len(p) for p in geo.planes]
        chunk_last, plane_last = Signal(init=geo.chunks == 1), Signal(init=n_planes[0] == 1)
        g_last = Signal(init=geo.groups == 1)
        end_chunks, end_group = chunk_last, chunk_last & plane_last
        end_vector = end_group & g_last
        one_plane_next = Array([C(n_planes[(k + 1) % geo.groups] == 1) for k in range(geo.groups)])[g]
        # V is written down a cycle after the claim: the loader's V of a bank lands a cycle
        # after the bank is full (_value_sum); the finalizer reads it sum_delay cycles later
        v_write = v_buf.write_port()
        claim_first, claim_bank = Signal(), Signal()
        m.d.sync += [v_write.en.eq(sums_claim), v_write.addr.eq(wb), claim_first.eq(first_group), claim_bank.eq(rb)]
        m.d.comb += v_write.data.eq(Mux(claim_first, Array(v_bank)[claim_bank], v_cur))
        with m.If(v_write.en & claim_first):
            m.d.sync += v_cur.eq(Array(v_bank)[claim_bank])
        with m.If(issue):
            m.d.sync += [chunk.eq(Mux(end_chunks, 0, chunk + 1)),
                         chunk_last.eq(Mux(end_chunks, geo.chunks == 1, chunk == geo.chunks - 2)),
                         plane_last.eq(Mux(end_group, one_plane_next,
                                           Mux(end_chunks, plane + 1 == last_plane, plane_last)))]
            with m.If(starting):   # claim the sum buffer; the group's V rides with it
                m.d.comb += sums_claim.eq(1)
            with m.If(end_chunks):
                m.d.sync += [plane.eq(plane + 1), w_base.eq(w_base + geo.chunks)]
            m.d.sync += starting.eq(end_group)
            with m.If(end_group):
                m.d.sync += [plane.eq(0), wb.eq(ring_next(wb, SUM_BUFFERS)), g.eq(g + 1),
                             first_group.eq(end_vector), g_last.eq(Mux(end_vector, geo.groups == 1, g == geo.groups - 2))]
            with m.If(end_vector):
                m.d.sync += [g.eq(0), rb.eq(~rb), w_base.eq(0)]
                m.d.comb += full_clr.eq(Mux(rb, 0b10, 0b01))
        flags = Cat(issue, chunk == 0, end_chunks, end_group, plane, wb)
        self._compute_datapath(m, w_word, a_rd, flags, sums, sums_set)

    def _weight_words(self, m, words, addr):
        """The weight word at ``addr``, two cycles later (read, then a register synthesis
        moves into the block RAM). A memory deeper than one block RAM's 512 words is split
        into banks of 512 read side by side, each with its own output register, and the
        bank is selected after them and registered again, three cycles after ``addr``:
        Yosys would cascade one deep memory by depth, with a multiplexer between the RAMs
        and the register, which then stays in the fabric."""
        width = self.geometry.pe * self.geometry.simd
        if weight_banks(self.layer, self.folding) == 1:
            port = _mem(m, "weights", unsigned(width), words).read_port()
            m.d.comb += port.addr.eq(addr)
            return self._delay(m, port.data, 1, "w_word", reset_less=True)
        in_bank = WEIGHT_BANK.bit_length() - 1                 # address bits within a bank
        outs = []
        for b, k in enumerate(range(0, len(words), WEIGHT_BANK)):
            port = _mem(m, f"weights{b}", unsigned(width), words[k:k + WEIGHT_BANK]).read_port()
            m.d.comb += port.addr.eq(addr[:in_bank])
            outs.append(self._delay(m, port.data, 1, f"w_bank{b}", reset_less=True))
        which = self._delay(m, addr[in_bank:], 2, "w_bank_sel")
        return self._delay(m, Array(outs)[which], 1, "w_word", reset_less=True)

    def _compute_datapath(self, m, w_word, a_rd, flags, sums, sums_set):
        geo, layer = self.geometry, self.layer
        terms = plane_sum_terms(layer.in_coef)
        # memory output register (block RAM OUTREG), then AND and popcount
        # reset-less, so that synthesis can put them in the RAMs (rtl/netlist.py)
        # (one register more when the weights are banked, to meet their bank select)
        banked = weight_banks(layer, self.folding) > 1
        a_words = [self._delay(m, p.data, 1 + banked, f"a_word{j}", reset_less=True) for j, p in enumerate(a_rd)]
        lane_sums = []
        for p in range(geo.pe):
            counts = []
            for j in range(layer.in_bits):
                unit = Popcount(geo.simd)
                m.submodules[f"{POPCOUNT_PREFIX}{p}_{j}"] = unit
                m.d.comb += [unit.weights.eq(w_word[p * geo.simd:(p + 1) * geo.simd]), unit.inputs.eq(a_words[j])]
                counts.append(unit.o)
            addends = [(counts[j] << shift) if sign > 0 else -(counts[j] << shift) if sign < 0 else C(0)
                       for j, shift, sign in terms]
            lane_sums.append(pipelined_sum(m, addends, geo.sum_width, f"psum{p}"))
        # the sums are ready sum_delay - 2 cycles after their issue, and written one later
        flags_d = self._delay(m, flags, geo.sum_delay - 2, "cflags")
        valid, first, last_chunk, end_group = flags_d[0], flags_d[1], flags_d[2], flags_d[3]
        slot = flags_d[4:4 + bits_for_levels(max(2, layer.weight_bits))]   # the width of `plane`
        buf = flags_d[4 + len(slot):]
        port = sums.write_port()
        totals = []
        for p, lane_sum in enumerate(lane_sums):
            acc = Signal(signed(geo.sum_width), name=f"rsum{p}")
            total = Signal(signed(geo.sum_width), name=f"rtotal{p}")
            m.d.comb += total.eq(Mux(first, 0, acc) + lane_sum)
            with m.If(valid):
                m.d.sync += acc.eq(total)
            totals.append(total.as_unsigned())
        # the write is registered: the sums memory is a block RAM, often far from the adders
        w_addr, w_en = Signal.like(port.addr), Signal()
        w_data, w_set = Signal.like(port.data, reset_less=True), Signal()
        m.d.sync += [w_addr.eq(buf * layer.weight_bits + slot), w_data.eq(Cat(*totals)), w_en.eq(valid & last_chunk),
                     w_set.eq(valid & end_group)]
        m.d.comb += [port.addr.eq(w_addr), port.data.eq(w_data), port.en.eq(w_en), sums_set.eq(w_set)]

    @staticmethod
    def _delay(m, value, cycles, name, reset_less=False):
        for k in range(cycles):
            reg = Signal(len(value), name=f"{name}_d{k}", reset_less=reset_less)
            m.d.sync += reg.eq(value)
            value = reg
        return value

    # --- finalizer -----------------------------------------------------------------------

    def _finalizer(self, m, sums, full_flags, v_buf):
        full_now, sums_read = full_flags      # full_now: the buffer rb is written (some are)
        geo, layer, units = self.geometry, self.layer, self.folding.out_lanes
        coefs = coef_image(layer, geo)
        c_rd = _mem(m, "coefs", unsigned(units * geo.coef_width), coefs).read_port()
        s_rd = sums.read_port()
        fifo = StreamFifo(units * self.field, self.schedule.fifo_depth)
        m.submodules.fifo = fifo
        m.d.comb += [self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy), fifo.r_en.eq(self.o.ready)]
        rb = Signal(range(SUM_BUFFERS))
        g = Signal(range(max(2, geo.groups)))
        block = Signal(range(max(2, max(geo.blocks))))
        step = Signal(range(max(2, layer.weight_bits)))
        c_addr = Signal(range(max(2, len(coefs))))
        b_addr = Signal(range(max(2, sum(geo.blocks))))
        last_step = Array([C(len(p) - 1, range(max(2, layer.weight_bits))) for p in geo.planes])[g]
        last_block = Array([C(b - 1, range(max(2, max(geo.blocks)))) for b in geo.blocks])[g]
        # registers, not compares (``step == 0``, "the FIFO has room"): they gate ``go``
        starting, fifo_full, go = Signal(init=1), Signal(), Signal()
        m.d.comb += [go.eq(~starting | (full_now & ~fifo_full)),
                     s_rd.addr.eq(rb * layer.weight_bits + step), c_rd.addr.eq(c_addr)]
        end_block = step == last_step
        with m.If(go):
            m.d.sync += [c_addr.eq(c_addr + 1), step.eq(step + 1), starting.eq(end_block)]
            with m.If(end_block):
                m.d.sync += [step.eq(0), block.eq(block + 1), b_addr.eq(b_addr + 1)]
                with m.If(block == last_block):
                    m.d.sync += [block.eq(0), rb.eq(ring_next(rb, SUM_BUFFERS)), g.eq(g + 1)]
                    m.d.comb += sums_read.eq(1)
                    with m.If(g == geo.groups - 1):
                        m.d.sync += [g.eq(0), c_addr.eq(0), b_addr.eq(0)]
        v_read = v_buf.read_port(domain="comb")
        m.d.comb += v_read.addr.eq(rb)
        self._final_datapath(m, s_rd, c_rd, fifo, Cat(go, starting, end_block, block, b_addr), v_read.data, len(block))
        # beats in the FIFO plus beats started and not yet written, as one count (a write
        # moves a beat from one to the other): +1 per block started, −1 per beat read out,
        # a cycle late, from a register (the next stage's ready comes from afar;
        # hwsim.cycles.EngineModel counts the same way)
        read = Signal()
        m.d.sync += read.eq(fifo.r_en & fifo.r_rdy)
        _, _, all_used = occupancy(m, go & starting, read, self.schedule.fifo_depth, "used")
        m.d.comb += fifo_full.eq(all_used)

    def _final_datapath(self, m, s_rd, c_rd, fifo, flags, v_now, block_bits):
        geo, layer, units = self.geometry, self.layer, self.folding.out_lanes
        acc_bits, field = layer.acc_bits, self.field
        # Every memory's data is registered before any logic reads it, by a reset-less
        # register that synthesis moves into the block RAM (OUTREG, rtl/netlist.py): a
        # DP16KD's clock-to-out alone is most of a 150 MHz cycle.
        f = [flags] + [None] * 7
        for k in range(1, 8):
            f[k] = self._delay(m, f[k - 1], 1, f"f{k}")
        block_of = lambda k: f[k][3:3 + block_bits]      # noqa: E731 (field views of the flags)
        addr_of = lambda k: f[k][3 + block_bits:]       # noqa: E731
        # u+2: sums word and coefficients registered; V of this group follows
        s_word = Signal(geo.pe * geo.sum_width, reset_less=True)
        w2 = [Signal(signed(geo.coef_width), name=f"w2_{u}", reset_less=True) for u in range(units)]
        v = [Signal(signed(geo.value_width), name=f"v{k}") for k in range(1, 4)]
        m.d.sync += [s_word.eq(s_rd.data), v[0].eq(v_now), v[1].eq(v[0]), v[2].eq(v[1])]
        m.d.sync += [w2[u].eq(c_rd.data[u * geo.coef_width:(u + 1) * geo.coef_width].as_signed())
                     for u in range(units)]
        # u+3: each unit's lane of the block
        lanes = [s_word[p * geo.sum_width:(p + 1) * geo.sum_width].as_signed() for p in range(geo.pe)]
        r3 = [Signal(signed(geo.sum_width), name=f"r3_{u}") for u in range(units)]
        w3 = [Signal(signed(geo.coef_width), name=f"w3_{u}") for u in range(units)]
        m.d.sync += [r3[u].eq(Array(lanes[u::units])[block_of(2)]) for u in range(units)]
        m.d.sync += [w3[u].eq(w2[u]) for u in range(units)]
        # u+4: the term 2·R − V ('pm1') or R
        # the multiplier's operands and product are reset-less, so that synthesis can put
        # them in the DSP's input and output registers (rtl/netlist.py)
        t4 = [Signal(signed(geo.term_width), name=f"t4_{u}", reset_less=True) for u in range(units)]
        w4 = [Signal(signed(geo.coef_width), name=f"w4_{u}", reset_less=True) for u in range(units)]
        m.d.sync += [t4[u].eq(2 * r3[u] - v[2] if self.pm1 else r3[u]) for u in range(units)]
        m.d.sync += [w4[u].eq(w3[u]) for u in range(units)]
        # u+5: the product (the engine's only multiplier, wrapping modulo 2**width)
        threshold = layer.output == "threshold"
        # A threshold layer accumulates d_k = acc − thr_k, one per threshold, from bias − thr_k
        # (the thresholds memory holds those): level = #{k: d_k ≥ 0} reads sign bits only,
        # no comparator after the adders. d_k needs one bit more than acc; the true final
        # d_k fits, so the wrap-around stays exact.
        width = acc_bits + 1 if threshold else acc_bits
        per_unit = layer.out_levels - 1 if threshold else 1
        prod = [Signal(signed(width), name=f"prod{u}", reset_less=True) for u in range(units)]
        m.d.sync += [prod[u].eq(w4[u] * t4[u]) for u in range(units)]
        if threshold:
            starts = block_image(layer.bias[:, None] - layer.thresholds, geo, width)
            start_rd = _mem(m, "thresholds", unsigned(units * per_unit * width), starts).read_port()
        else:
            start_rd = _mem(m, "bias", unsigned(units * width), block_image(layer.bias, geo, width)).read_port()
        # read a cycle early and registered twice: in the block RAM (OUTREG) and again
        # beside the adders, so the route from the RAM column has a cycle of its own
        start = self._delay(m, start_rd.data, 2, "start", reset_less=True)
        m.d.comb += start_rd.addr.eq(addr_of(2))
        # u+6: accumulated, starting from the bias (or bias − thr_k) at a block's first step
        accs = [[Signal(signed(width), name=f"acc{u}_{k}") for k in range(per_unit)] for u in range(units)]
        with m.If(f[5][0]):
            for u in range(units):
                for k, acc in enumerate(accs[u]):
                    first = start[(u * per_unit + k) * width:(u * per_unit + k + 1) * width].as_signed()
                    m.d.sync += acc.eq(Mux(f[5][1], first, acc) + prod[u])
        if threshold:
            fields = []
            for u in range(units):
                level = Signal(field, name=f"level{u}")
                m.d.comb += level.eq(sum(~d[-1] for d in accs[u]))     # d_k ≥ 0: sign bit clear
                fields.append(level)
        else:
            fields = [acc for (acc,) in accs]
        # u+7: the beat, registered; written into the FIFO (visible at u+8)
        beat, write = Signal(units * field), Signal()
        m.d.sync += [beat.eq(Cat(*[fld.as_unsigned()[:field] for fld in fields])), write.eq(f[6][0] & f[6][2])]
        m.d.comb += [fifo.w_data.eq(beat), fifo.w_en.eq(write)]
