"""The reference step timed inside a run: it trains a copy (the run's weights and random streams stay as they were),
it is no part of the run's identity, and a row sets the run's wall time against it."""
from __future__ import annotations

import pytest
import torch

from convtwist_zoo import create_model
from convtwist_zoo.research.runner import _against_reference
from convtwist_zoo.training import TrainConfig
from convtwist_zoo.training.identity import differences, recipe_of
from convtwist_zoo.training.step_timing import reference_images_per_s


def test_the_reference_steps_train_a_copy_and_leave_the_run_untouched():
    torch.manual_seed(0)
    model = create_model("convtwist_resnet18", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(model="convtwist_resnet18", data="x", image_size=64, amp=False)
    rng = torch.get_rng_state()
    img_s, seconds = reference_images_per_s(model, cfg, torch.device("cpu"), batch=2, steps=1)
    assert img_s > 0 and seconds > 2 / img_s  # the warm-up steps count in the seconds, not in the rate
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BatchNorm statistics included
    assert all(p.grad is None for p in model.parameters())


def test_reference_steps_are_no_part_of_a_runs_identity():
    a = recipe_of(vars(TrainConfig(model="xresnet18", data="imagewoof")))
    b = recipe_of(vars(TrainConfig(model="xresnet18", data="imagewoof", reference_steps=8)))
    assert differences(a, b) == [] and differences(a, {**b, "lr": 1e-3}) == [("lr", 4e-3, 1e-3)]


def test_a_row_sets_the_runs_wall_time_against_its_in_run_bound():
    history = [{"seconds": 100.0, "samples_per_s": 50.0, "eval_seconds": 5.0, "reference_images_per_s": 62.5},
               {"seconds": 110.0, "samples_per_s": 50.0, "eval_seconds": 5.0, "reference_images_per_s": 55.0}]
    # images 5000 and 5500; bound 80 s + 100 s; wall 100 + 110 + 2 x 5 + a final evaluation of 18 s
    assert _against_reference(history, 18.0) == {"reference_images_per_s": 58.75, "reference_bound_seconds": 180.0,
                                                  "wall_over_reference": pytest.approx(238 / 180, abs=5e-4)}
    assert _against_reference([{k: v for k, v in history[0].items() if k != "reference_images_per_s"}], 18.0) == {}
