"""The shared trainer core: NLCL, moved onto it, logs the very losses it logged before
the move (same seed, sizes and thread count). On the machine that recorded them they
are byte for byte the same; another CPU's vector units may round float32 sums
differently, so the test allows that (1e-5 relative), and no more."""

import csv
import io
from pathlib import Path

import pytest

from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.trainer import train

# losses.csv of 3 steps of the previous, self-contained NLCL trainer on the tiny dataset
# (tests/train/conftest.py) with the settings below, one CPU thread.
BEFORE_THE_MOVE = """\
step,epoch,lr,total,adversarial,consistency,sparsity,layer_contrast,location_contrast,discriminator
1,0,0.0002,8.655750274658203,0.7154314517974854,0.445627361536026,0.47521549463272095,2.804703950881958,4.6424665451049805,0.49981582164764404
2,0,0.0002,6.550394058227539,0.4136500954627991,0.23118069767951965,0.324518084526062,2.386188507080078,3.4869232177734375,0.2483142912387848
3,0,0.0002,7.163961410522461,0.8488708138465881,0.4175424873828888,0.5352157354354858,2.3861947059631348,3.457831859588623,0.15802830457687378
"""

SETTINGS = NLCLConfig(
    steps=3, crop=48, channels=8, blocks=2, window=16, patch=8, positives=4, negatives=16,
    nce_layers=(0, 1, 2, 3), nce_locations=32, workers=0, checkpoint_every=3, log_every=1,
)  # fmt: skip


def test_nlcl_on_the_core_logs_byte_identical_losses(tmp_path: Path, _dataset):
    train(_dataset, tmp_path / "run", SETTINGS, threads=1)
    logged = (tmp_path / "run" / "losses.csv").read_text()
    before, now = (list(csv.DictReader(io.StringIO(text))) for text in (BEFORE_THE_MOVE, logged))
    assert logged.splitlines()[0] == BEFORE_THE_MOVE.splitlines()[0]  # the same columns
    assert len(now) == len(before)
    for old, new in zip(before, now, strict=True):
        assert {k: float(v) for k, v in new.items()} == pytest.approx(
            {k: float(v) for k, v in old.items()}, rel=1e-5
        )
