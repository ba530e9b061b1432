"""lqflow export: the integer IR (numpy only), lowering from PyTorch, the flow and the CLI.

Only :mod:`export.ir` and :mod:`export.random_model` are torch-free; import the
lowering (:mod:`export.lower`) explicitly.
"""
