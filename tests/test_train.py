"""The training proof: specs train on scikit-learn's digits (shipped with the package, no downloads)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest
import torch

import archspec
from archspec.cli import main as cli_main
from archspec.tools.train import DIGITS_OVERRIDES, check_fits_digits, digits_split, train
from conftest import SPECS

# A small residual net for 1x8x8 digits: 19,706 parameters, 0.53 M MACs per image.
DIGITS_CNN = """\
name: digits_cnn
input: {channels: 1, size: 8}
defaults:
  conv: {norm: batch, activation: relu}
layers:
  - {name: stem, type: conv, out: 16, kernel: 3}
  - {name: block1, type: basic, out: 16}
  - {name: block2, type: basic, out: 32, stride: 2}
  - {name: avgpool, type: global_pool, op: avg, flatten: true}
  - {name: fc, type: linear, out: 10}
"""


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """A net this small trains fastest on one thread (and is not slowed down by a busy machine's other work)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_small_spec_trains_to_95_percent_on_digits() -> None:
    with one_thread():
        result = train(archspec.loads(DIGITS_CNN), epochs=8, batch=64, lr=5e-3, progress=False, log=None)
    assert (result.train_size, result.test_size) == (1437, 360)
    assert len(result.history) == 8
    assert result.history[-1].loss < result.history[0].loss / 5
    assert result.test_accuracy >= 0.95, [str(e) for e in result.history]
    assert not result.model.training


def test_digits_split_is_seeded_and_stratified() -> None:
    x_train, y_train, x_test, y_test = digits_split(0.2, seed=0)
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert abs(x_train.mean().item()) < 1e-5 and abs(x_train.std().item() - 1) < 1e-5  # standardised on train
    assert torch.equal(digits_split(0.2, seed=0)[3], y_test)
    assert not torch.equal(digits_split(0.2, seed=1)[3], y_test)
    counts_test = torch.bincount(y_test, minlength=10).float()
    counts_all = torch.bincount(torch.cat([y_train, y_test]), minlength=10).float()
    assert ((counts_test - counts_all * 0.2).abs() <= 1).all()  # every class held out in proportion


def test_bundled_spec_fits_digits_with_overrides() -> None:
    spec = archspec.load(SPECS / "resnet18.yaml", DIGITS_OVERRIDES["resnet18"])
    check_fits_digits(spec)
    assert spec.input.shape == (1, 8, 8) and spec.output_shape == (10,)
    with pytest.raises(ValueError, match=r"input is 3x224x224.*input.channels=1.*output is \(1000,\)"):
        check_fits_digits(archspec.load(SPECS / "resnet18.yaml"))


def test_bundled_spec_takes_a_training_step_on_digits() -> None:
    """ResNet-18 with the documented overrides: one short epoch on a slice of the data runs and learns."""
    spec = archspec.load(SPECS / "resnet18.yaml", DIGITS_OVERRIDES["resnet18"])
    with one_thread():
        result = train(spec, epochs=1, batch=128, progress=False, log=None, test_fraction=0.8)
    assert result.history[0].train_accuracy > 0.3  # far above chance (0.1) after 3 steps


def test_cli_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "digits_cnn.yaml"
    path.write_text(DIGITS_CNN)
    before = torch.get_num_threads()
    try:
        code = cli_main(["train", str(path), "--epochs", "2", "--batch", "32", "--threads", "1",
                         "--set", "layers.block2.out=24"])
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert code == 0
    params = archspec.loads(DIGITS_CNN, overrides=["layers.block2.out=24"]).params
    assert params < archspec.loads(DIGITS_CNN).params  # the --set override reached the model
    assert f"digits_cnn: {params:,} parameters; digits 1437 train / 360 held-out (seed 0)" in out
    assert "epoch 1/2  loss" in out and "epoch 2/2  loss" in out and "held-out acc" in out
    assert "digits_cnn: held-out accuracy" in out


def test_cli_train_refuses_a_spec_that_does_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["train", str(SPECS / "resnet18.yaml")]) == 2  # a spec train cannot use
    assert "does not fit the digits data set" in capsys.readouterr().err
