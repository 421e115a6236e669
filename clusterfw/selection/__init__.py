"""Selection functions: which clusters a catalogue would have found (``clusterfw selfn``).

- :mod:`~clusterfw.selection.injection`: source injection into copies of the user's maps, for
  any finder or combination of finders, run exactly as ``clusterfw run``;
- :mod:`~clusterfw.selection.analytic`: the fast analytic path of the ``mf`` finder (its own
  filter noise per tile, template mismatch, Y–M scatter, optimisation bias);
- :mod:`~clusterfw.selection.table`: the completeness table (overall and per tile);
- :mod:`~clusterfw.selection.outputs`: mass-limit maps and figures;
- :mod:`~clusterfw.selection.run`: :func:`~clusterfw.selection.run.measure`, the whole command
  as a library call.

See docs/selection.md.
"""
