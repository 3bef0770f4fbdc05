"""Ready-made models for the experiments (``mg.models``): one CNN per dataset, every normalization arm.

>>> import minigrad as mg
>>> model = mg.models.CifarCNN(norm="brn", r_max=3.0, d_max=5.0, generator=mg.Generator(0))
"""

from minigrad.models.cnn import NORMS, CifarCNN, DigitsCNN, conv_block, make_norm

__all__ = ["NORMS", "CifarCNN", "DigitsCNN", "conv_block", "make_norm"]
