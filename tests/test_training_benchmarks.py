"""The training workloads of benchmarks/run.py (T1..T3) at tiny sizes: a few steps of
each column, compiled graphc's losses against eager graphc's and (when torch is
installed) torch's from the same weights. Times are measured but never asserted."""

from __future__ import annotations

import pytest

from benchmarks import run, training

NAMES = ["T1", "T2", "T3"]


@pytest.fixture(scope="module", params=NAMES)
def trained(request):
    w, = training.build_training([request.param], small=True)
    return w, training.run_graphc(w, warmup=1, timed=2)


@pytest.mark.filterwarnings("ignore:graphc.compile. ran eagerly")
def test_compiled_training_loss_matches_eager(trained):
    w, row = trained
    assert "compiled_error" not in row, f"{w.name}: {row.get('compiled_error')}"
    assert row["loss_matches"], (w.name, row["eager_loss"], row["compiled_loss"])
    # first + warmup + timed steps, and the two of peak_bytes; a call that ran eagerly
    # left its reason
    assert row["compiled_calls"] == 1 + 1 + 2 + 2
    assert row["ran_compiled"] == row["compiled_calls"] or row["eager_runs"], w.name


def test_the_whole_step_compiled_matches_eager(trained):
    w, row = trained
    assert "step_error" not in row, f"{w.name}: {row.get('step_error')}"
    assert row["step_loss_matches"], (w.name, row["eager_loss"], row["step_loss"])
    assert not row["step_eager_runs"], row["step_eager_runs"]


@pytest.mark.filterwarnings("ignore:graphc.compile. ran eagerly")
def test_training_losses_match_torch_from_the_same_weights(trained):
    torch = pytest.importorskip("torch")
    w, row = trained
    # the same steps from the same weights: equal losses show the weights, the batch, the
    # loss and the optimizer's updates were carried over (not just the forward)
    training.run_torch(w, row, torch, warmup=1, timed=2, with_compile=False)
    assert row["torch_loss"] == pytest.approx(row["eager_loss"], rel=1e-4), w.name
    one_step = dict(row)
    training.run_torch(w, one_step, torch, warmup=0, timed=1, with_compile=False)
    assert one_step["torch_loss"] != pytest.approx(row["torch_loss"], rel=1e-6), \
        f"{w.name}: the loss did not change over two training steps"


def test_workload_names_are_checked():
    with pytest.raises(SystemExit):
        run.main(["T9"])
