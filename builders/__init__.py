"""The build pipeline that fills an snnbench table.

``plan`` decides which (cell, seed) rows a build needs, ``executors`` runs work items (this process, a
local process pool, or Ray), ``stages`` holds the worker-side work (scoring, training), and ``build``
is the single-writer driver that journals and folds results into the table.
"""
