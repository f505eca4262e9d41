"""The writer's per-chunk stats pass (numba), with the overview's bin sums in the same pass.

A chunk of one activation arrives as float16 bit patterns ``[B, T, U]`` (B streams, T steps, U units), of which
stream b's first ``c = counts[b]`` rows are valid. Per stream, in three loops over values that are in cache:

1. the rows are transposed into the unit-major tile ``[U, c]`` the parquet pages want, in 16 × 16 blocks held in
   vector registers (:func:`_block16`);
2. 16 units at a time, over the stream's rows in order (:func:`_strip`, explicit 16-lane vectors): the sum and
   sum of squares of the finite values, the min and max order keys (:func:`lstmviz.f16keys.key`) of the finite
   values, and, with an overview, per bin of rows the sum and count of the values that are not NaN. With an
   overview the min and max are taken per bin (the unit cards' blocks, :mod:`lstmviz.unit_sweep`), and the unit's
   extent folds in the bins a stream touched;
3. per unit, over its tile row (four units at a time): one table lookup and one increment per value into counts
   of *codes* (:func:`code_table`). A code stands for one class of float16 patterns: its histogram bin (or non-finite),
   ``x < LOW``, ``x > HIGH``, NaN, ±inf. So the bins, n_low, n_high, n_nan and n_inf all come out of one count per
   value, folded at the end (``fold``).

Exactness (the stats tests compare with plain numpy over the stored values):

- the table is built with numpy from the float32 formula the histogram has always used,
  ``clip((x − lo)·scale, 0, K − 1)``, and the float32 comparisons ``x < LOW``, ``x > HIGH``, for every one of the
  65536 patterns: a value's code is exact by construction (no formula is evaluated in the pass);
- a stream's sum is exact in float64 in any order (float16 values are multiples of 2⁻²⁴ below 2¹⁶, so sums of up
  to 2¹³ of them are exact), and is added to the unit's total once per stream, as before; the sum of squares is
  summed in row order, which may round differently from another order in its last bits;
- min and max are taken on order keys, exact;
- the overview's sums start from the bin's running sum and add the values one by one in row order, as
  :func:`lstmviz.analysis._overview_jit.bin_sums` does: the same float64 roundings, bit for bit.

numba has no float16 on the CPU; the vector loops are written in LLVM IR (:func:`_block16`, :func:`_strip`), where
a float16 pattern is converted by ``fpext half`` (vcvtph2pd with AVX512-FP16, vcvtph2ps with F16C; on a CPU
with neither, whatever LLVM lowers it to, which has not been tried here). They live in this file, next to the
kernel that inlines them, so that numba's cache (keyed by this file) never keeps a kernel built from an older
version.
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..f16keys import LUT, NO_KEY

W = 16  # units per vector strip, and the transpose's block
_STRICT = {"error_model": "numpy", "nogil": True, "cache": True}
_NAN_KEY = 0x7C00  # |key| above this: NaN; equal: ±inf


@functools.lru_cache(maxsize=64)  # a recording's activations share a few ranges
def code_table(lo: float, hi: float, bins: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8 ``[65536]``, fold int64 ``[n_codes, bins + 5]``): every float16 pattern's code, and per code
    its histogram bin (columns ``[0, bins)``, the non-finite column ``bins``) and whether it is ``x < low``,
    ``x > high``, NaN, ±inf (columns ``bins + 1 … bins + 4``). Read-only, shared by the activations of one range.

    The bin is ``clip((x − lo)·scale, 0, bins − 1)`` in float32, scale = bins / (hi − lo), as the histogram has
    always counted; the comparisons are float32 ones, as ``x < low`` on the stored values reads."""
    x = LUT
    finite = np.isfinite(x)
    lo32, scale32 = np.float32(lo), np.float32(bins / (hi - lo))
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.minimum(np.maximum((np.where(finite, x, 0) - lo32) * scale32, np.float32(0)), np.float32(bins - 1))
    flags = [x < np.float32(low), x > np.float32(high), np.isnan(x), np.isinf(x)]
    klass = np.where(finite, v.astype(np.int64), bins) << 4  # the bin, then one bit per flag
    for i, flag in enumerate(flags):
        klass |= flag.astype(np.int64) << (3 - i)
    kinds, codes = np.unique(klass, return_inverse=True)
    fold = np.zeros((len(kinds), bins + 5), np.int64)
    fold[np.arange(len(kinds)), kinds >> 4] = 1
    for i in range(4):
        fold[:, bins + 1 + i] = (kinds >> (3 - i)) & 1
    codes = codes.astype(np.uint8)
    codes.flags.writeable = fold.flags.writeable = False
    return codes, fold


def _network() -> tuple[list[list[tuple[int, int, list[int], int]]], list[int]]:
    """The 16 × 16 transpose of 16-bit lanes as four stages of two-input shuffles (``(a, b, mask, out)``: vector
    out ← shuffle(a, b, mask)): interleaves of 1, 2 and 4 lanes within 128-bit halves, then of the halves; and
    which column each final vector holds. Checked by running it on labels."""

    def unpack(g: int, upper: bool) -> list[int]:
        out = []
        for half in range(2):
            base = half * 8 + (4 if upper else 0)
            for k in range(4 // g):
                out += [base + k * g + e for e in range(g)] + [W + base + k * g + e for e in range(g)]
        return out

    stages = []
    for g in (1, 2, 4):
        stage = []
        for i in range(W):
            if (i // g) % 2 == 0:
                stage += [(i, i + g, unpack(g, False), i), (i, i + g, unpack(g, True), i + g)]
        stages.append(stage)
    lower, upper = [*range(8), *range(16, 24)], [*range(8, 16), *range(24, 32)]
    stages.append([s for i in range(8) for s in ((i, i + 8, lower, i), (i, i + 8, upper, i + 8))])
    labels = [np.arange(W) + W * i for i in range(W)]
    for stage in stages:
        nxt = list(labels)
        for a, b, mask, out in stage:
            nxt[out] = np.concatenate([labels[a], labels[b]])[mask]
        labels = nxt
    cols = [int(v[0]) for v in labels]
    if not all((labels[k] == cols[k] + W * np.arange(W)).all() for k in range(W)):
        raise AssertionError("the transpose network does not transpose")
    return stages, cols


_STAGES, _COLS = _network()


def _flat(ty: types.Type, dtype: types.Type) -> bool:
    return isinstance(ty, types.Array) and ty.ndim == 1 and ty.layout == "C" and ty.dtype == dtype


def _data(context, builder, ty, value):
    return context.make_array(ty)(context, builder, value).data


def _at(builder, ptr, offset, vt: ir.VectorType):
    return builder.bitcast(builder.gep(ptr, [offset]), vt.as_pointer())


@intrinsic
def _block16(typingctx, src, s_off, s_stride, dst, d_off, d_stride):
    """``dst[d_off + j·d_stride + i] = src[s_off + i·s_stride + j]`` for i, j < 16 (uint16 arrays ``[n]``)."""
    if not (_flat(src, types.uint16) and _flat(dst, types.uint16)):
        return None
    sig = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        sa, so, ss, da, do, ds = args
        sp, dp = _data(context, builder, signature.args[0], sa), _data(context, builder, signature.args[3], da)
        vt = ir.VectorType(ir.IntType(16), W)
        rows = [
            builder.load(_at(builder, sp, builder.add(so, builder.mul(ss, ss.type(i))), vt), align=2) for i in range(W)
        ]
        for stage in _STAGES:
            nxt = list(rows)
            for a, b, mask, out in stage:
                nxt[out] = builder.shuffle_vector(rows[a], rows[b], ir.Constant(ir.VectorType(ir.IntType(32), W), mask))
            rows = nxt
        for k in range(W):
            builder.store(rows[k], _at(builder, dp, builder.add(do, builder.mul(ds, ds.type(_COLS[k]))), vt), align=2)
        return context.get_dummy_value()

    return sig, codegen


def _make_strip(overview: bool):
    """The strip loop (see :func:`_strip`), with or without the overview's sums."""

    def typer(typingctx, src, s_off, n, stride, sums, keys, u_off, k_off, osum, ocount, o_off):
        arrays = ((src, types.uint16), (sums, types.float64), (keys, types.int16), (osum, types.float64),
                  (ocount, types.int64))  # fmt: skip
        if not all(_flat(a, d) for a, d in arrays):
            return None
        sig = types.void(src, types.intp, types.intp, types.intp, sums, keys, types.intp, types.intp, osum, ocount,
                         types.intp)  # fmt: skip

        def codegen(context, builder, signature, args):
            so, n, ss, uo, ko, oo = (args[i] for i in (1, 2, 3, 6, 7, 10))
            sp, fp, kp, op, cp = (_data(context, builder, signature.args[i], args[i]) for i in (0, 4, 5, 8, 9))
            f64, i64, i16 = (ir.VectorType(t, W) for t in (ir.DoubleType(), ir.IntType(64), ir.IntType(16)))

            def const(v: int):
                return ir.Constant(i16, [v] * W)

            slots = {  # 16 units: sums[u], sums[U + u] from u = u_off (U = stride), keys[k], keys[U + k] from k_off
                "s": (_at(builder, fp, uo, f64), 8),
                "s2": (_at(builder, fp, builder.add(uo, ss), f64), 8),
                "kmin": (_at(builder, kp, ko, i16), 2),
                "kmax": (_at(builder, kp, builder.add(ko, ss), i16), 2),
            }
            if overview:
                slots["o"] = (_at(builder, op, oo, f64), 8)
                slots["oc"] = (_at(builder, cp, oo, i64), 8)
            acc = {}
            for name, (p, align) in slots.items():  # promoted to registers by LLVM's mem2reg
                acc[name] = cgutils.alloca_once(builder, p.type.pointee)
                builder.store(builder.load(p, align=align), acc[name])
            with cgutils.for_range(builder, n) as loop:
                h = builder.load(_at(builder, sp, builder.add(so, builder.mul(loop.index, ss)), i16), align=2)
                x = builder.fpext(builder.bitcast(h, ir.VectorType(ir.HalfType(), W)), f64)
                mag = builder.and_(h, const(0x7FFF))
                finite = builder.icmp_signed("<", mag, const(_NAN_KEY))
                key = builder.select(builder.icmp_signed("<", h, const(0)), builder.sub(const(0), mag), mag)
                a = {k: builder.load(v) for k, v in acc.items()}
                lo = builder.select(finite, key, const(NO_KEY))
                hi = builder.select(finite, key, const(-NO_KEY))
                builder.store(builder.select(builder.icmp_signed("<", lo, a["kmin"]), lo, a["kmin"]), acc["kmin"])
                builder.store(builder.select(builder.icmp_signed(">", hi, a["kmax"]), hi, a["kmax"]), acc["kmax"])
                d = builder.select(finite, x, ir.Constant(f64, [0.0] * W))
                builder.store(builder.fadd(a["s"], d), acc["s"])
                builder.store(builder.fadd(a["s2"], builder.fmul(d, d)), acc["s2"])
                if overview:  # as bin_sums: a NaN leaves the sum as it was, any other value is added
                    ok = builder.icmp_signed("<=", mag, const(_NAN_KEY))
                    builder.store(builder.select(ok, builder.fadd(a["o"], x), a["o"]), acc["o"])
                    builder.store(builder.add(a["oc"], builder.zext(ok, i64)), acc["oc"])
            for name, (p, align) in slots.items():
                builder.store(builder.load(acc[name]), p, align=align)
            return context.get_dummy_value()

        return sig, codegen

    typer.__name__ = typer.__qualname__ = "strip_overview" if overview else "strip_plain"
    return intrinsic(typer)


_strip_plain = _make_strip(False)
_strip_overview = _make_strip(True)


@njit(**_STRICT)
def _strip(src, s_off, n, U, sums, keys, u0, k_off, osum, ocount, o_off, overview):
    """Rows ``[r, r + n)`` of units ``u0 + [0, 16)`` of a stream, ``src`` its bits flattened ``[c·U]`` and
    ``s_off = r·U + u0``, into the stream's sums float64 ``[2·U]`` (sum, then sum of squares, of the finite values),
    into keys int16 at ``k_off + [0, 16)`` and ``k_off + U + [0, 16)`` (min, then max, order key of the finite
    values: a bin's row of the overview's keys, or without one the single bin's ``[2·U]``) and, with ``overview``,
    into ``osum`` float64 / ``ocount`` int64 at ``o_off + [0, 16)`` (a bin's row, flattened)."""
    if overview:
        _strip_overview(src, s_off, n, U, sums, keys, u0, k_off, osum, ocount, o_off)
    else:
        _strip_plain(src, s_off, n, U, sums, keys, u0, k_off, osum, ocount, o_off)


@njit(**_STRICT)
def _transpose(src: np.ndarray, U: int, c: int, tile: np.ndarray) -> None:
    """tile ``[U·c]`` (unit-major) ← src ``[c·U]`` (row-major)."""
    c16, u16 = c - c % W, U - U % W
    for t0 in range(0, c16, W):
        for u0 in range(0, u16, W):
            _block16(src, t0 * U + u0, U, tile, u0 * c + t0, c)
    for t in range(c16, c):
        for u in range(U):
            tile[u * c + t] = src[t * U + u]
    for u in range(u16, U):
        for t in range(c16):
            tile[u * c + t] = src[t * U + u]


@njit(**_STRICT)
def _tail_units(src, c, U, u1, sums, keys, pos0, per, osum, ocount, overview) -> None:
    """What :func:`_strip` counts, for units ``[u1, U)`` (fewer than 16), one value at a time, rows in order; keys
    flattened ``[bins, 2, U]``, the overview's, or without one a single bin's."""
    for t in range(c):
        o = ((pos0 + t) // per) * U
        q = 2 * o
        for u in range(u1, U):
            h = np.int32(src[t * U + u])
            mag = h & 0x7FFF
            k = np.int16(-mag if h & 0x8000 else mag)
            x = np.float64(LUT[h])
            if mag < _NAN_KEY:
                sums[u] += x
                sums[U + u] += x * x
                keys[q + u] = min(keys[q + u], k)
                keys[q + U + u] = max(keys[q + U + u], k)
            if overview and mag <= _NAN_KEY:
                osum[o + u] += x
                ocount[o + u] += 1


@njit(**_STRICT)
def _histogram(tile: np.ndarray, c: int, U: int, codes: np.ndarray, hist: np.ndarray) -> None:
    """A stream's tile (bits ``[U·c]``, unit-major) into the code counts hist ``[U, n_codes]``, four units' rows at a
    time: consecutive increments go to four different units' counts, so that a run of equal codes (a saturated
    unit) does not make each increment wait for the one before."""
    u = 0
    while u + 4 <= U:
        r0, r1 = tile[u * c : (u + 1) * c], tile[(u + 1) * c : (u + 2) * c]
        r2, r3 = tile[(u + 2) * c : (u + 3) * c], tile[(u + 3) * c : (u + 4) * c]
        h0, h1, h2, h3 = hist[u], hist[u + 1], hist[u + 2], hist[u + 3]
        for t in range(c):
            h0[codes[r0[t]]] += 1
            h1[codes[r1[t]]] += 1
            h2[codes[r2[t]]] += 1
            h3[codes[r3[t]]] += 1
        u += 4
    for v in range(u, U):
        for t in range(c):
            hist[v, codes[tile[v * c + t]]] += 1


@njit(**_STRICT)
def stats_pass(
    bits: np.ndarray,
    counts: np.ndarray,
    starts: np.ndarray,
    codes: np.ndarray,
    tiles: np.ndarray,
    acc: np.ndarray,
    extent: np.ndarray,
    hist: np.ndarray,
    overview: bool,
    ov_offset: int,
    ov_per: int,
    ov_sum: np.ndarray,
    ov_count: np.ndarray,
    ov_keys: np.ndarray,
) -> None:
    """bits uint16 ``[B, T, U]`` (C-contiguous); counts, starts int64 ``[B]``; codes uint8 ``[65536]``
    (:func:`code_table`); tiles uint16 ``[B, ≥U·T]`` (out: tile b packed ``[U, c_b]``).

    Accumulates into acc float64 ``[2, U]`` (sum, sum of squares of the finite values), extent int64 ``[2, U]``
    (the min and max order keys) and hist int64 ``[U, n_codes]``. With ``overview``, stream b's
    row t is at position ``ov_offset + starts[b] + t`` and its values that are not NaN are summed and counted into
    bin ``position // ov_per`` of ov_sum float64 / ov_count int64 ``[bins, U]``, and the min and max order keys of its
    finite values into ov_keys int16 ``[bins, 2, U]``: the strips take them there instead of per stream, and the
    extent folds in the bins a stream touched.
    """
    B, U = bits.shape[0], bits.shape[2]
    u16 = U - U % W
    per = ov_per if overview else 1 << 62
    osum, ocount, okeys = ov_sum.reshape(-1), ov_count.reshape(-1), ov_keys.reshape(-1)
    sums = np.empty(2 * U)
    keys = np.empty(2 * U, np.int16)  # without an overview, the extremes' one bin (per is beyond every position)
    keys[:U] = NO_KEY
    keys[U:] = -NO_KEY
    into = okeys if overview else keys
    for b in range(B):
        c = counts[b]
        if c <= 0:
            continue
        src = bits[b].reshape(-1)
        tile = tiles[b]
        _transpose(src, U, c, tile)
        sums[:] = 0.0  # the stream's own sums, exact, added to the totals below as one number per unit
        pos0 = ov_offset + starts[b]
        t = 0
        while t < c:  # runs of rows in one overview bin
            bin_ = (pos0 + t) // per
            t1 = min(c, (bin_ + 1) * per - pos0)
            q = 2 * U * bin_
            for u0 in range(0, u16, W):
                _strip(src, t * U + u0, t1 - t, U, sums, into, u0, q + u0, osum, ocount, bin_ * U + u0, overview)
            t = t1
        _tail_units(src, c, U, u16, sums, into, pos0, per, osum, ocount, overview)
        for u in range(U):
            acc[0, u] += sums[u]
            acc[1, u] += sums[U + u]
        for bin_ in range(pos0 // per, (pos0 + c - 1) // per + 1):  # min and max are idempotent: fold each bin
            q = 2 * U * bin_
            for u in range(U):
                extent[0, u] = min(extent[0, u], into[q + u])
                extent[1, u] = max(extent[1, u], into[q + U + u])
        _histogram(tile, c, U, codes, hist)
