"""Studies beyond the paper's section 4, each a module with one function that runs every arm and seed.

* :mod:`~minigrad.studies.recurrent`: section 5's proposal, Batch Renorm with one set of statistics
  shared by every timestep of a recurrence, against batchnorm per timestep, naive sharing, layer norm
  and none (``minigrad reproduce --study recurrent``).
"""
