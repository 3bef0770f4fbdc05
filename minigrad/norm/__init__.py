"""Batch Normalization and Batch Renormalization, in the order a reader of the paper wants them.

Read beside Ioffe, *Batch Renormalization* (2017), Algorithm 1 and section 3:

* :mod:`~minigrad.norm.kernels`: the algorithm on arrays (moments, forward and
  backward of BN and BRN, inference, the moving-average update, telemetry);
* :mod:`~minigrad.norm.reduction`: over which values the sums run (one batch,
  or every process's for synchronized BatchNorm);
* :mod:`~minigrad.norm.functions`: the kernels as autograd Functions;
* :mod:`~minigrad.norm.spec`: the settings and the checks, done once at the boundary;
* :mod:`~minigrad.norm.functional`: ``batch_norm`` / ``batch_renorm`` on Tensors;
* :mod:`~minigrad.norm.layers`: ``BatchNorm1d/2d``, ``BatchRenorm1d/2d``;
* :mod:`~minigrad.norm.schedule`: the r_max / d_max schedule of section 4;
* :mod:`~minigrad.norm.layernorm`: ``LayerNorm``, the batch-independent baseline;
* :mod:`~minigrad.norm.recurrent`: the normalizations inside a recurrence (section 5's proposal).

The layers and the schedule are also ``minigrad.nn.*``; the functional forms
are also ``minigrad.nn.functional.*``.
"""

from minigrad.norm import kernels
from minigrad.norm.functional import batch_norm, batch_norm_train, batch_renorm, batch_renorm_train
from minigrad.norm.layernorm import LayerNorm, layer_norm
from minigrad.norm.layers import (
    DEFAULT_MOMENTUM,
    BatchNorm1d,
    BatchNorm2d,
    BatchRenorm1d,
    BatchRenorm2d,
    renorm_telemetry,
)
from minigrad.norm.recurrent import RecurrentNorm
from minigrad.norm.schedule import (
    DEFAULT_WARMUP_RULE,
    PAPER_TOTAL_STEPS,
    WARMUP_RULES,
    RenormSchedule,
    renorm_schedule,
    renorm_schedule_for_run,
)
from minigrad.norm.spec import NormSpec, RenormLimits

__all__ = [
    "DEFAULT_MOMENTUM", "DEFAULT_WARMUP_RULE", "PAPER_TOTAL_STEPS", "WARMUP_RULES", "BatchNorm1d", "BatchNorm2d",
    "BatchRenorm1d", "BatchRenorm2d", "LayerNorm", "NormSpec", "RecurrentNorm", "RenormLimits", "RenormSchedule",
    "batch_norm", "batch_norm_train", "batch_renorm", "batch_renorm_train", "kernels", "layer_norm",
    "renorm_schedule", "renorm_schedule_for_run", "renorm_telemetry",
]  # fmt: skip
