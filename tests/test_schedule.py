"""The learning rate is set explicitly at every step: peak (per 64 images, scaled with the batch) x the schedule's
factor at that step x the group's multipliers (head or backbone, and 0 while the backbone is frozen)."""
from __future__ import annotations

import math

import pytest

from convtwist_zoo import create_model
from convtwist_zoo.training import TrainConfig
from convtwist_zoo.training.schedule import lr_schedule, make_optimizer, peak_lr_of, set_lr


def test_onecycle_warms_up_from_4_percent_then_decays_by_a_cosine_to_zero():
    cfg = TrainConfig(model="resnet18", data="x", epochs=4, schedule="onecycle", warmup_epochs=1.0)
    factor = lr_schedule(cfg, steps_per_epoch=10)
    assert [factor(s) for s in (0, 5, 10)] == pytest.approx([0.04, 0.52, 1.0])
    assert factor(25) == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert factor(40) == pytest.approx(0.0, abs=1e-12)


def test_flatcos_is_flat_for_its_fraction_then_a_cosine_to_zero():
    cfg = TrainConfig(model="resnet18", data="x", epochs=5, schedule="flatcos", flat_fraction=0.72)
    factor = lr_schedule(cfg, steps_per_epoch=10)
    assert factor(0) == factor(35) == 1.0
    assert factor(36) == 1.0 and factor(43) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 14)))
    assert factor(50) == pytest.approx(0.0, abs=1e-12)


def test_each_group_gets_the_peak_times_the_schedule_times_its_multipliers():
    cfg = TrainConfig(model="resnet18", data="x", lr=4e-3, batch_size=128, backbone_lr_mult=0.1)
    assert peak_lr_of(cfg) == pytest.approx(8e-3)
    optimizer, ema = make_optimizer(cfg, create_model("resnet18", num_classes=3))
    assert ema is None
    for frozen in (False, True):
        for g in optimizer.param_groups:
            g["lr_scale"] = 0.0 if frozen and not g["is_head"] else 1.0
        set_lr(optimizer, 0.5)
        for g in optimizer.param_groups:
            expected = 0.5 if g["is_head"] else (0.0 if frozen else 0.05)
            assert g["lr"] == pytest.approx(expected), (frozen, g["is_head"])
    set_lr(optimizer, 0.25)  # nothing carried over from the previous step
    assert sorted({round(g["lr"], 6) for g in optimizer.param_groups}) == [0.0, 0.25]
