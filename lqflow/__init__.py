"""lqflow — the app: the end-to-end flow, the ``lqflow`` CLI, reports and plots.

It sits on top of every other layer (``docs/architecture.md``): ``lqir`` (the IR),
``models`` (PyTorch), ``hwsim`` (the simulator), ``rtl`` (the hardware) and ``export``
(lowering and the hls4ml writer).
"""
