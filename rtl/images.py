"""Memory images and widths of one engine, computed from the IR layer (numpy, no hardware).

Every image lists its words in the order the engine's running addresses visit them.
"""

from dataclasses import dataclass

import numpy as np

from hwsim.cycles import engine_schedule, group_planes, plane_sum_terms
from lqir import bit_planes, bits_for_levels, input_values, signed_width

__all__ = ["EngineGeometry", "pack", "weight_image", "coef_image", "block_image"]


def pack(values, width):
    """Little-endian concatenation of integers (two's complement, ``width`` bits each)."""
    mask = (1 << width) - 1
    word = 0
    for k, value in enumerate(values):
        word |= (int(value) & mask) << (k * width)
    return word


@dataclass(frozen=True)
class EngineGeometry:
    """Sizes and widths of one dense layer folded onto an engine."""

    in_features: int
    out_features: int
    pe: int
    simd: int
    lanes_in: int           # input values per beat
    units: int              # finalizer units = output values per beat
    chunks: int             # ceil(in_features / simd)
    groups: int             # ceil(out_features / pe)
    planes: tuple           # per group: the weight planes it issues
    blocks: tuple           # per group: finalizer blocks (output beats)
    in_width: int           # bits of an input level index
    sum_width: int          # signed width of a lane's plane sum R_i = Σ_j Ac[j]·P_ij
    term_width: int         # signed width of 2·R_i − V ('pm1') or R_i ('bin')
    value_width: int        # signed width of one input value and of V = Σ_n value_in[x_n]
    coef_width: int         # signed width of a weight coefficient Wc[o, i]
    sum_delay: int          # cycles from a group's last issue to its sums being visible
    last_shift: int         # bits a short last chunk's inputs sit above their place (the loader shifts)

    @classmethod
    def of(cls, layer, folding, pad=False):
        """``pad``: the input has one more level, a padded tap (code 0, value 0)."""
        schedule = engine_schedule(layer, folding)
        terms = plane_sum_terms(layer.in_coef)
        n = layer.in_features
        bound = sum(1 << shift for _, shift, sign in terms if sign) * n   # |R| and every partial sum
        values = input_values(layer)
        v_lo, v_hi = min(0, int(values.min()) * n), max(0, int(values.max()) * n)
        term_bound = 2 * bound + max(-v_lo, v_hi) if layer.weight_encoding == "pm1" else bound
        coef = int(np.abs(layer.weight_coef).max())
        slots = folding.simd // folding.in_lanes                    # beats per full chunk
        last_beats = schedule.in_beats - (schedule.chunks - 1) * slots
        return cls(in_features=n, out_features=layer.out_features, pe=folding.pe, simd=folding.simd,
                   lanes_in=folding.in_lanes, units=folding.out_lanes, chunks=schedule.chunks,
                   groups=len(schedule.group_planes), planes=group_planes(layer, folding),
                   blocks=schedule.group_blocks, in_width=bits_for_levels(layer.in_levels + int(pad)),
                   sum_width=signed_width(-bound, bound), term_width=signed_width(-term_bound, term_bound),
                   value_width=signed_width(v_lo, v_hi), coef_width=signed_width(-coef, coef),
                   sum_delay=schedule.sum_delay, last_shift=(slots - last_beats) * folding.in_lanes)

    def channels(self, group, block):
        """Output channels of one finalizer block (the last ones may lie beyond the layer)."""
        first = group * self.pe + block * self.units
        return range(first, first + self.units)


def weight_image(layer, geo):
    """Per group, per plane it issues, per chunk: bit ``p·SIMD + s`` = plane bit of w[g·PE+p, c·SIMD+s].

    The last chunk's inputs sit ``geo.last_shift`` bits higher (the loader shifts each beat
    in at the top), so its weights do too; every bit without an input is 0.
    """
    planes = np.zeros((geo.groups * geo.pe, geo.chunks * geo.simd, layer.weight_bits), np.uint8)
    last = (geo.chunks - 1) * geo.simd
    codes = bit_planes(layer.weight_code, layer.weight_bits)
    planes[:geo.out_features, :last] = codes[:, :last]
    planes[:geo.out_features, last + geo.last_shift:geo.in_features + geo.last_shift] = codes[:, last:]
    words = []
    for g in range(geo.groups):
        rows = planes[g * geo.pe:(g + 1) * geo.pe]
        for i in geo.planes[g]:
            for c in range(geo.chunks):
                words.append(pack(rows[:, c * geo.simd:(c + 1) * geo.simd, i].reshape(-1), 1))
    return words


def _padded(per_channel, geo):
    out = np.zeros((geo.groups * geo.pe,) + per_channel.shape[1:], np.int64)
    out[:geo.out_features] = per_channel
    return out


def coef_image(layer, geo):
    """Per group, per block, per plane the group issues: lane f = Wc[channel f of the block, i]."""
    coef = _padded(layer.weight_coef, geo)
    return [pack([coef[o, i] for o in geo.channels(g, b)], geo.coef_width)
            for g in range(geo.groups) for b in range(geo.blocks[g]) for i in geo.planes[g]]


def block_image(per_channel, geo, width):
    """Per group, per block: lane f = ``per_channel[channel f]`` (all of its row, in order)."""
    values = _padded(per_channel, geo)
    return [pack(values[list(geo.channels(g, b))].reshape(-1), width)
            for g in range(geo.groups) for b in range(geo.blocks[g])]
