"""A short training proof: train a compiled spec on scikit-learn's digits (no downloads).

The digits data set (1,797 8x8 grayscale images, 10 classes) ships inside scikit-learn, so the
run needs no network. A spec fits it when its input is 1x8x8 and its output has 10 classes; a
bundled ImageNet spec gets there with `--set` overrides, e.g. ResNet-18 (about 97% held-out after
5 epochs, some 30 s on one CPU thread):

    python cli.py train specs/resnet18.yaml --set input.channels=1 --set input.size=8 \
        --set layers.fc.out=10 --epochs 5

    result = archspec.tools.train.train("specs/resnet18.yaml", overrides=DIGITS_OVERRIDES["resnet18"], epochs=5)

The held-out split is stratified and seeded, so a run is reproducible on one machine.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import UsageError
from ..language.spec import Spec, as_spec
from ..units import plural

DIGITS_SHAPE = (1, 8, 8)
DIGITS_CLASSES = 10
DIGITS_SAMPLES = 1797  # train and held-out together
EVAL_BATCH = 512  # images per forward pass of the held-out accuracy

# --set overrides that fit a bundled ImageNet spec to 1x8x8 digits and 10 classes (tests/test_train.py).
# ResNet-18's 7x7/2 stem and 3x3/2 max-pool leave 2x2 maps into layer1; the shapes still fit.
DIGITS_OVERRIDES: dict[str, list[str]] = {
    "resnet18": ["input.channels=1", "input.size=8", "layers.fc.out=10"],
}


@dataclass
class EpochStats:
    epoch: int
    loss: float            # mean training loss over the epoch
    train_accuracy: float  # on the training batches, as they were seen (model in training mode)
    test_accuracy: float   # held-out, model in eval mode
    seconds: float

    def __str__(self) -> str:
        return (f"loss {self.loss:.4f}  train acc {self.train_accuracy:6.2%}  "
                f"held-out acc {self.test_accuracy:6.2%}  ({self.seconds:.1f} s)")


@dataclass
class TrainResult:
    model: nn.Module
    spec: Spec
    history: list[EpochStats] = field(default_factory=list)
    train_size: int = 0
    test_size: int = 0

    @property
    def test_accuracy(self) -> float:
        """Held-out accuracy after the last epoch."""
        return self.history[-1].test_accuracy if self.history else float("nan")


def digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as (x_train, y_train, x_test, y_test): x is (N, 1, 8, 8) float32, standardised
    with the training split's mean and std; the split is stratified by class and seeded."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("training on digits needs scikit-learn: pip install 'archspec[train]'") from exc
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.images, data.target, test_size=test_fraction, stratify=data.target, random_state=seed)
    x_train = torch.tensor(x_train, dtype=torch.float32).unsqueeze(1)
    x_test = torch.tensor(x_test, dtype=torch.float32).unsqueeze(1)
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, torch.tensor(y_train), (x_test - mean) / std, torch.tensor(y_test)


def check_fits_digits(spec: Spec) -> None:
    """A ValueError naming the overrides to use when the spec's input or classes do not fit digits."""
    problems = []
    if tuple(spec.input.shape) != DIGITS_SHAPE:
        problems.append(f"its input is {'x'.join(map(str, spec.input.shape))}, digits are 1x8x8 "
                        "(--set input.channels=1 --set input.size=8)")
    if tuple(spec.output_shape) != (DIGITS_CLASSES,):
        problems.append(f"its output is {tuple(spec.output_shape)}, digits have 10 classes "
                        f"(--set {classifier_override(spec)})")
    if problems:
        raise UsageError(f"spec {spec.name} does not fit the digits data set: " + "; ".join(problems))


def classifier_override(spec: Spec) -> str:
    """`layers.NAME.out=10` for the spec's last top-level linear layer (its classifier), for hints."""
    linears = [c for c in spec.analyse().children if c.type == "linear" and not c.aux]
    return f"layers.{linears[-1].name if linears else '<classifier>'}.out={DIGITS_CLASSES}"


def loss_of(output: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor,
            aux_weight: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the main logits plus `aux_weight` times each auxiliary head's (GoogLeNet's 0.3);
    returns (loss, main logits)."""
    if isinstance(output, tuple):
        main, *aux = output
    else:
        main, aux = output, []
    loss = nn.functional.cross_entropy(main, target)
    for logits in aux:
        loss = loss + aux_weight * nn.functional.cross_entropy(logits, target)
    return loss, main


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = EVAL_BATCH) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    model.train(was_training)
    return correct / len(x)


def _progress(enabled: bool) -> Any:
    """A rich progress bar on stderr (on a terminal; silent when not, where the epoch lines suffice)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=console, transient=True,
                    disable=not (enabled and console.is_terminal))


def train(spec: str | Path | Spec, overrides: dict[str, Any] | list[str] | None = None, *, epochs: int = 10,
          batch: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4, device: str | torch.device = "cpu",
          seed: int = 0, test_fraction: float = 0.2, variant: str | None = None, phi: float | None = None,
          progress: bool = True, log: Callable[[str], None] | None = print) -> TrainResult:
    """Train a spec on scikit-learn's digits: AdamW with a per-step cosine schedule, cross-entropy
    (auxiliary heads weighted 0.3), a seeded stratified held-out split; one line per epoch to `log`."""
    spec = as_spec(spec, overrides, variant=variant, phi=phi)
    check_fits_digits(spec)
    if epochs < 1 or batch < 1 or not lr > 0:
        raise ValueError("epochs and batch must be at least 1 and lr positive")
    from ..backend.compiler import compile_spec

    device = torch.device(device)
    x_train, y_train, x_test, y_test = (t.to(device) for t in digits_split(test_fraction, seed))
    torch.manual_seed(seed)
    model = compile_spec(spec, device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)
    order = torch.Generator().manual_seed(seed)
    result = TrainResult(model, spec, train_size=len(x_train), test_size=len(x_test))
    if log:
        log(f"{spec.name}: {sum(p.numel() for p in model.parameters()):,} parameters; digits "
            f"{len(x_train)} train / {len(x_test)} held-out (seed {seed}); {plural(epochs, 'epoch')} of "
            f"{plural(steps_per_epoch, 'step')}, batch {batch}, AdamW lr {lr:g}, on {device}")
    with _progress(progress) as bar:
        task = bar.add_task("epoch 1", total=epochs * steps_per_epoch, info="")
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            bar.update(task, description=f"epoch {epoch}/{epochs}")
            perm = torch.randperm(len(x_train), generator=order).to(device)
            total_loss, correct = 0.0, 0
            for i in range(0, len(x_train), batch):
                idx = perm[i:i + batch]
                if len(idx) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                    continue  # batch norm cannot train on a single sample
                xb, yb = x_train[idx], y_train[idx]
                loss, logits = loss_of(model(xb), yb)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                total_loss += loss.item() * len(idx)
                correct += (logits.argmax(1) == yb).sum().item()
                bar.update(task, advance=1, info=f"loss {loss.item():.3f}")
            stats = EpochStats(epoch, total_loss / len(x_train), correct / len(x_train),
                               accuracy(model, x_test, y_test), time.perf_counter() - start)
            result.history.append(stats)
            if log:
                log(f"epoch {epoch:>{len(str(epochs))}}/{epochs}  {stats}")
    model.eval()
    return result


if __name__ == "__main__":  # python -m archspec.tools.train SPEC [overrides...]
    outcome = train(sys.argv[1], sys.argv[2:] or None)
    print(f"held-out accuracy {outcome.test_accuracy:.2%}")
