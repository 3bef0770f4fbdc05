"""The defaults' short-run check on real CIFAR-10 images (slow; skipped where the image archive is absent).

docs/results.md ("CIFAR-10, 300 steps") reports that with minigrad's defaults
(Δ = 0.1, the time-constants warm-up) a 300-step Batch Renorm run on 10,000
CIFAR-10 training images ends within 2 points of BatchNorm with no loss spike,
where the earlier defaults (Δ = 0.01, the proportional warm-up) spiked to a
loss of 4-10 and ended about 10 points behind. This test reruns seed 0 of that
table through the same configuration ``minigrad train`` builds, and checks the
earlier defaults still fail it, so that the check can tell the two apart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from minigrad.train import TrainConfig, train

pytestmark = [pytest.mark.slow, pytest.mark.backends("numpy")]

_CANDIDATES = [
    os.environ.get("MINIGRAD_CIFAR10_IMAGES", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"),
    "/work/shared/data/cifar10-jpeg.tar.gz",
]
ARCHIVE = next((Path(p) for p in _CANDIDATES if p and Path(p).is_file()), None)

SPIKE = 3.0  # a training loss above this after the first 20 steps is a spike (ln 10 = 2.30 is chance)


def _run(tmp_path: Path, name: str, **overrides) -> tuple[float, float]:
    """(final test accuracy, highest training loss after step 20) of a 300-step run on 10,000 training images."""
    config = TrainConfig(
        dataset="cifar10", data=str(ARCHIVE), data_cache=str(tmp_path / "cifar10-cache.npz"), train_subset=10000,
        steps=300, eval_every=100, seed=0, progress=False, out=str(tmp_path / name), **overrides,
    )  # fmt: skip
    result = train(config, log=None)
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train" and r["step"] > 20]
    return result.test_accuracy, max(losses)


@pytest.mark.skipif(ARCHIVE is None, reason="the CIFAR-10 image archive is not on this machine")
def test_with_the_defaults_a_short_cifar10_batch_renorm_run_keeps_up_with_batchnorm(tmp_path):
    bn_accuracy, bn_peak = _run(tmp_path, "bn", norm="bn")
    brn_accuracy, brn_peak = _run(tmp_path, "brn", norm="brn")
    assert abs(brn_accuracy - bn_accuracy) <= 0.02, (bn_accuracy, brn_accuracy)
    assert bn_peak < SPIKE and brn_peak < SPIKE, (bn_peak, brn_peak)
    # the earlier defaults, which this check must be able to refuse
    old_accuracy, old_peak = _run(tmp_path, "brn-old", norm="brn", norm_momentum=0.01,
                                  renorm_warmup_rule="proportional")  # fmt: skip
    assert bn_accuracy - old_accuracy > 0.02 or old_peak >= SPIKE, (old_accuracy, old_peak)
