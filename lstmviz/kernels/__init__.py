"""CPU speed for recording: the same numbers as :mod:`lstmviz.cells`' equations, at the pace of torch's own forward.

* :mod:`.linear`: oneDNN GEMMs with pre-packed weights (what torch's fused CPU LSTM uses), and the weight
  preparation that lets one sigmoid cover every gate (tanh(x) = 2σ(2x) − 1).
* :mod:`.pool`: buffers and packed weights kept from one chunk of a corpus to the next, pre-faulted once.
* :mod:`.pointwise`: one LSTM step's gates and cell update after its GEMM, in torch ops, or the compiled
  version from :mod:`.compiled` where numba can build it.
* :mod:`.compiled`: that pointwise update as one numba-compiled loop (imports numba).
* :mod:`.loop`: :func:`~.loop.lstm_loop` and :func:`~.loop.gru_loop`, which run a layer step by step and keep
  every gate.

Nothing here is imported by ``import lstmviz``; the recorder imports it when it records.
"""
