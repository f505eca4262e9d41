"""The correlation pass's compiled step, :func:`block_sums`, built with llvmlite alone.

Why not numba, as the rest of the package: numba's first compiled call in a process loads its typing and lowering
registries, scipy's BLAS among them, about 0.5 s on these machines, and a correlation row is often the first
compiled thing a notebook or a fresh dashboard process asks for. This one loop, written in LLVM IR and compiled when
first called (about 0.05 s, the same LLVM that numba uses), vectorises just as numba's did (its reductions may be
reassociated; nothing assumes finite values, so a non-finite value still makes its unit's Σ non-finite). It is called
through ctypes, which releases the GIL, so row groups sum on several threads (:func:`lstmviz.cards.read`).
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

IR = r"""
define void @block_sums(ptr noalias nocapture readonly %a, ptr noalias nocapture readonly %flat,
                        ptr noalias nocapture readonly %starts, ptr noalias nocapture readonly %units, i64 %n,
                        i64 %R, ptr noalias nocapture readonly %lut, ptr noalias nocapture readonly %shift,
                        ptr noalias nocapture %out) {
entry:
  br label %unit_head
unit_head:
  %i = phi i64 [0, %entry], [%i_next, %unit_tail]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %unit_body, label %exit
unit_body:
  %vp = getelementptr inbounds i64, ptr %units, i64 %i
  %v = load i64, ptr %vp, align 8
  %sp = getelementptr inbounds i64, ptr %starts, i64 %i
  %st = load i64, ptr %sp, align 8
  %row = getelementptr i16, ptr %flat, i64 %st
  %shp = getelementptr inbounds double, ptr %shift, i64 %v
  %sh = load double, ptr %shp, align 8
  br label %t_head
t_head:
  %t = phi i64 [0, %unit_body], [%t_next, %t_body]
  %dot = phi double [0.0, %unit_body], [%dot2, %t_body]
  %s = phi double [0.0, %unit_body], [%s2, %t_body]
  %ss = phi double [0.0, %unit_body], [%ss2, %t_body]
  %tmore = icmp slt i64 %t, %R
  br i1 %tmore, label %t_body, label %unit_tail
t_body:
  %xp = getelementptr i16, ptr %row, i64 %t
  %bits = load i16, ptr %xp, align 1
  %idx = zext i16 %bits to i64
  %lp = getelementptr inbounds float, ptr %lut, i64 %idx
  %xf = load float, ptr %lp, align 4
  %xd = fpext float %xf to double
  %d = fsub double %xd, %sh
  %ap = getelementptr inbounds double, ptr %a, i64 %t
  %av = load double, ptr %ap, align 8
  %prod = fmul reassoc contract double %av, %d
  %dot2 = fadd reassoc contract double %dot, %prod
  %s2 = fadd reassoc contract double %s, %d
  %sq = fmul reassoc contract double %d, %d
  %ss2 = fadd reassoc contract double %ss, %sq
  %t_next = add nsw i64 %t, 1
  br label %t_head
unit_tail:
  %o = mul nsw i64 %v, 3
  %p0 = getelementptr inbounds double, ptr %out, i64 %o
  %p1 = getelementptr inbounds double, ptr %p0, i64 1
  %p2 = getelementptr inbounds double, ptr %p0, i64 2
  %c0 = load double, ptr %p0, align 8
  %c1 = load double, ptr %p1, align 8
  %c2 = load double, ptr %p2, align 8
  %n0 = fadd double %c0, %dot
  %n1 = fadd double %c1, %s
  %n2 = fadd double %c2, %ss
  store double %n0, ptr %p0, align 8
  store double %n1, ptr %p1, align 8
  store double %n2, ptr %p2, align 8
  %i_next = add nsw i64 %i, 1
  br label %unit_head
exit:
  ret void
}
"""

_P = ctypes.c_void_p
_SIGNATURE = ctypes.CFUNCTYPE(None, _P, _P, _P, _P, ctypes.c_int64, ctypes.c_int64, _P, _P, _P)
_LOCK = threading.Lock()
_BUILT: list = []  # [the LLVM context and execution engine, which own the code, and the function]: built once


def _kernel() -> ctypes._CFuncPtr:
    """The compiled ``block_sums``, built on the first call (under a lock: row groups arrive on several threads)."""
    with _LOCK:
        if not _BUILT:
            import llvmlite.binding as llvm

            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            context = llvm.create_context()  # its own: numba compiles in the global one, under a lock of its own
            module = llvm.parse_assembly(IR, context=context)
            module.verify()
            try:
                features = llvm.get_host_cpu_features().flatten()
            except RuntimeError:  # a host LLVM cannot describe: its baseline code
                features = ""
            target = llvm.Target.from_default_triple()
            machine = target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=features, opt=3)
            tuning = llvm.create_pipeline_tuning_options(speed_level=3)
            tuning.loop_vectorization = tuning.slp_vectorization = True
            passes = llvm.create_pass_builder(machine, tuning)
            passes.getModulePassManager().run(module, passes)
            engine = llvm.create_mcjit_compiler(module, machine)
            engine.finalize_object()
            _BUILT[:] = [context, engine, _SIGNATURE(engine.get_function_address("block_sums"))]
        return _BUILT[-1]


def block_sums(
    a: np.ndarray, flat: np.ndarray, starts: np.ndarray, units: np.ndarray, lut: np.ndarray, shift: np.ndarray,
    out: np.ndarray,
) -> None:  # fmt: skip
    """Runs of float16 values against a float64 ``[R]``: unit ``units[i]``'s R values are the bit patterns
    ``flat[starts[i] : starts[i] + R]`` (uint16 ``[*]``, contiguous: a unit-major block or a file's pages, at any
    byte offset), decoded by ``lut`` float32 ``[2¹⁶]``. Into out float64 ``[U, 3]`` (U = ``len(shift)``), per unit
    v: += Σ a·(x − shift[v]), Σ (x − shift[v]), Σ (x − shift[v])². The arguments are checked here, since the
    compiled loop reads whatever they point at."""
    R, k = len(a), len(units)
    whole = [a, starts, units, lut, shift, out]  # read with their types' alignment; flat, a byte at a time
    if not (
        a.dtype == np.float64 and a.ndim == 1
        and flat.dtype == np.uint16 and flat.ndim == 1 and flat.flags.c_contiguous
        and starts.dtype == units.dtype == np.int64 and starts.shape == units.shape == (k,)
        and lut.dtype == np.float32 and lut.shape == (1 << 16,)
        and shift.dtype == np.float64 and shift.ndim == 1
        and out.dtype == np.float64 and out.shape == (len(shift), 3) and out.flags.writeable
        and all(x.flags.c_contiguous and x.flags.aligned for x in whole)
    ):  # fmt: skip
        raise ValueError("block_sums: arguments of the wrong dtype, shape or layout")
    if k and (starts.min() < 0 or starts.max() > len(flat) - R or units.min() < 0 or units.max() >= len(shift)):
        raise ValueError(f"block_sums: runs of {R} values from {starts.min()}…{starts.max()} or units out of range")
    if k and R:
        _kernel()(a.ctypes.data, flat.ctypes.data, starts.ctypes.data, units.ctypes.data, k, R, lut.ctypes.data,
                  shift.ctypes.data, out.ctypes.data)  # fmt: skip
