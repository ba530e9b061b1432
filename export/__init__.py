"""lqflow export: lowering a trained :mod:`models` network to the IR (:mod:`export.lower`) and
the hls4ml writer (:mod:`export.hls`).  Import the submodule you need."""
