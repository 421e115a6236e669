"""Tables shipped with the simulator (see :mod:`clusterfw.sim.data.make_tables`)."""
