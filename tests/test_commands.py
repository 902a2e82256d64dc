"""The commands that allocate (build, export, bench, predict, train): the memory guard each runs first (with
the process's own cgroup limit), predict's bounded inputs and class names, a build on meta, train's and
bench's output."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import archspec
import archspec.backend.compiler
from archspec.cli import inference
from archspec.reports import guard
from archspec.tools.bench import BenchReport, BenchSettings, Timing
from archspec.cli import main
from archspec.reports.guard import cgroup_headroom, check_memory, estimate_memory
from archspec.tools.train import check_fits_digits
from archspec.backend.tta import preprocess
from conftest import SPECS
from test_train import DIGITS_CNN

# test_train's digits classifier (1x8x8 in, 10 classes out: every command, train included, takes it), with a
# torchvision reference for predict's class names.
DIGITS = DIGITS_CNN.replace("input:", "reference: torchvision:resnet18\ninput:")
HUGE = ["--set", "layers.block1.out=1000000"]  # 9e12 parameters: 32.7 TiB, over any machine's memory


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    path = tmp_path / "digits.yaml"
    path.write_text(DIGITS)
    return path


def gray(path: Path, size: tuple[int, int] = (12, 10)) -> Path:
    Image.linear_gradient("L").resize(size).save(path)
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("weights: ")]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# -- the cgroup limit: this process's own cgroup and its parents (v2, v1) --------------------------------------

def cgroup_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_cgroup_v2_takes_the_tightest_of_the_process_cgroup_and_its_parents(tmp_path: Path) -> None:
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "self"
    self_cgroup.write_text("0::/user.slice/job/task\n")
    cgroup_tree(root, {"cgroup.controllers": "memory\n",
                       "user.slice/memory.max": "max\n", "user.slice/memory.current": "5000\n",
                       "user.slice/job/memory.max": f"{3 << 30}\n", "user.slice/job/memory.current": f"{1 << 30}\n",
                       "user.slice/job/task/memory.max": f"{int(1.5 * 2**30)}\n",
                       "user.slice/job/task/memory.current": f"{1 << 28}\n"})
    # The process's own 1.5 GiB cgroup (1.25 GiB left), not the root's (no limit) nor the parent's (2 GiB left).
    assert cgroup_headroom(root, self_cgroup) == int(1.5 * 2**30) - (1 << 28)
    # A parent tighter than the process's own cgroup limits it too.
    (root / "user.slice/job/memory.current").write_text(f"{int(2.5 * 2**30)}\n")
    assert cgroup_headroom(root, self_cgroup) == 2**29
    # Over its limit: nothing left, never a negative figure.
    (root / "user.slice/job/task/memory.current").write_text(f"{2 << 30}\n")
    assert cgroup_headroom(root, self_cgroup) == 0


def test_cgroup_v1_reads_the_memory_controller_line(tmp_path: Path) -> None:
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "self"
    self_cgroup.write_text("5:cpu,cpuacct:/elsewhere\n4:memory:/docker/abc\n0::/\n")  # hybrid: v2 has no memory here
    unlimited = "9223372036854771712\n"  # v1's "no limit"
    cgroup_tree(root, {"memory/memory.limit_in_bytes": unlimited, "memory/memory.usage_in_bytes": "1\n",
                       "memory/docker/memory.limit_in_bytes": unlimited, "memory/docker/memory.usage_in_bytes": "1\n",
                       "memory/docker/abc/memory.limit_in_bytes": f"{1 << 30}\n",
                       "memory/docker/abc/memory.usage_in_bytes": f"{1 << 20}\n",
                       "cpu/elsewhere/memory.limit_in_bytes": "1\n", "unified/cgroup.procs": ""})
    assert cgroup_headroom(root, self_cgroup) == (1 << 30) - (1 << 20)
    # A container that sees only its own part of the tree: the missing levels are skipped, the root counts.
    (root / "memory/memory.limit_in_bytes").write_text(f"{1 << 29}\n")
    (root / "memory/memory.usage_in_bytes").write_text("0\n")
    assert cgroup_headroom(root, self_cgroup) == 1 << 29
    self_cgroup.write_text("4:memory:/not/in/this/view\n")
    assert cgroup_headroom(root, self_cgroup) == 1 << 29


def test_no_cgroup_limit_is_none(tmp_path: Path) -> None:
    self_cgroup = tmp_path / "self"
    self_cgroup.write_text("0::/a\n")
    cgroup_tree(tmp_path / "cgroup", {"cgroup.controllers": "", "a/memory.max": "max\n", "a/memory.current": "9\n"})
    assert cgroup_headroom(tmp_path / "cgroup", self_cgroup) is None
    assert cgroup_headroom(tmp_path / "cgroup", tmp_path / "no-such-file") is None


def test_the_guard_limits_by_the_process_cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "self"
    self_cgroup.write_text("0::/job\n")
    cgroup_tree(root, {"cgroup.controllers": "", "job/memory.max": f"{300 << 20}\n", "job/memory.current": "0\n"})
    monkeypatch.setattr(guard, "CGROUP_ROOT", root)
    monkeypatch.setattr(guard, "SELF_CGROUP", self_cgroup)
    assert guard.available_memory() == 300 << 20
    vgg = archspec.load(SPECS / "vgg16.yaml")  # 528 MiB of parameters: over half of 300 MiB
    with pytest.raises(archspec.SpecError, match=r"limit 150\.0 MiB \(50% of 300\.0 MiB available RAM\)"):
        check_memory(vgg)


def test_a_training_estimate_adds_gradients_optimizer_state_and_kept_activations() -> None:
    spec = archspec.load(SPECS / "resnet18.yaml")
    infer = estimate_memory(spec, batch=8)
    train = estimate_memory(spec, batch=8, training=True, optimizer_states=2)
    assert train.state_bytes == 3 * spec.params * 4 and infer.state_bytes == 0  # a gradient, Adam's two moments
    memory = archspec.summary(spec, depth=0, batch=8)
    assert train.activation_bytes >= memory.training_bytes > infer.activation_bytes  # kept for backward, and more
    assert train.total_bytes == train.param_bytes + train.buffer_bytes + train.activation_bytes + train.state_bytes
    assert "gradients and optimizer state 133.8 MiB, training activations at their peak" in train.describe()


# -- every command that allocates checks first ---------------------------------------------------------------

COMMANDS = {"build": [], "export": ["--format", "onnx"], "bench": [], "bench --train": ["--train"],
            "predict": ["--weights", "w.pth", "IMAGE"], "train": []}


@pytest.fixture
def no_compile(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """archspec.backend.compiler.compile_spec records its calls and stops the command (exit 1) instead of allocating."""
    calls: list[Any] = []

    def refuse(spec: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(spec)
        raise RuntimeError("compile reached")
    monkeypatch.setattr(archspec.backend.compiler, "compile_spec", refuse)
    return calls


@pytest.mark.parametrize("command", COMMANDS)
def test_each_allocating_command_refuses_a_spec_over_memory(command: str, digits: Path, tmp_path: Path,
                                                            no_compile: list[Any],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    image = str(gray(tmp_path / "x.png"))
    out = tmp_path / "out.onnx"
    extra = [image if a == "IMAGE" else a for a in COMMANDS[command]] + (["-o", str(out)] if command == "export" else [])
    args = [command.split()[0], str(digits), *extra, *HUGE]
    assert main(args) == 2
    error = one_line_error(capsys)
    assert error.startswith(f"{digits}:8:5: block1 (basic): the network needs about ")
    assert "this layer's parameters alone take 32.7 TiB" in error and "--allow-large" in error
    if command in ("bench --train", "train"):
        assert "gradients and optimizer state" in error and "training activations" in error
    assert no_compile == [] and sorted(p.name for p in tmp_path.iterdir()) == ["digits.yaml", "x.png"]  # nothing built
    # --allow-large lets the command go on to build the network (stopped here by the stand-in compile).
    assert main([*args, "--allow-large"]) == 1
    assert "compile reached" in capsys.readouterr().err and len(no_compile) == 1


def test_predict_checks_its_batch_times_the_tta_views(digits: Path, tmp_path: Path, no_compile: list[Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(inference, "check_fits", lambda args, spec, device, batch: seen.append(batch))
    images = [str(gray(tmp_path / f"{i}.png")) for i in range(3)]
    for extra in ([], ["--tta"], ["--batch-size", "2", "--tta"]):
        assert main(["predict", str(digits), "--weights", "w.pth", *images, *extra, "--set", "input.size=16"]) == 1
    assert seen == [3, 30, 20]  # at most --batch-size images, ten crops each with --tta


# -- predict: bounded inputs, one line and exit 2 -------------------------------------------------------------

@pytest.fixture
def digits_weights(digits: Path, tmp_path: Path) -> Path:
    path = tmp_path / "w.pth"
    torch.save(archspec.build(digits).state_dict(), path)
    return path


def test_predict_refuses_labels_from_a_device_or_over_the_bound(digits: Path, digits_weights: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = ["predict", str(digits), "--weights", str(digits_weights), str(gray(tmp_path / "x.png"))]
    assert main([*args, "--labels", "/dev/zero"]) == 2
    assert one_line_error(capsys) == "archspec predict: labels file /dev/zero is not a regular file"
    assert main([*args, "--labels", str(tmp_path)]) == 2
    assert one_line_error(capsys) == f"archspec predict: labels file {tmp_path} is not a regular file"
    monkeypatch.setattr(inference, "LABELS_MAX_BYTES", 100)
    big = tmp_path / "big.txt"
    big.write_text("a label\n" * 13)  # 104 bytes
    assert main([*args, "--labels", str(big)]) == 2
    assert one_line_error(capsys) == f"archspec predict: labels file {big} is 104 B, over the 100 B predict reads"
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\n" * 10)
    assert main([*args, "--labels", str(bad)]) == 2
    assert one_line_error(capsys).startswith(f"archspec predict: cannot read labels from {bad}: 'utf-8' codec")


def test_predict_refuses_a_decompression_bomb_in_one_line(digits: Path, digits_weights: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb, optimize=True)  # 400 M pixels in about 48 KB
    assert bomb.stat().st_size < 100_000
    args = ["predict", str(digits), "--weights", str(digits_weights)]
    assert main([*args, str(bomb)]) == 2
    error = one_line_error(capsys)
    assert error.startswith(f"archspec predict: image {bomb} is too large to decode (")
    assert error.endswith("predict decodes at most 89,478,485 pixels")
    # Under Pillow's own error threshold (2 x 89 M) but over ours: refused before decoding too.
    wide = tmp_path / "wide.png"
    Image.new("1", (10000, 10000)).save(wide, optimize=True)
    assert main([*args, str(wide)]) == 2
    assert "(10000x10000 pixels); predict decodes at most 89,478,485 pixels" in one_line_error(capsys)
    monkeypatch.setattr(inference, "IMAGE_MAX_BYTES", 1000)  # the file size is checked before anything
    assert main([*args, str(bomb)]) == 2
    assert one_line_error(capsys).startswith(f"archspec predict: image {bomb} is ")
    assert main([*args, str(tmp_path)]) == 2
    assert one_line_error(capsys) == f"archspec predict: image {tmp_path} is not a regular file"


# -- predict: class names from the torchvision reference --------------------------------------------------------

def test_predict_prints_the_torchvision_reference_categories(digits: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from torchvision.models import ResNet18_Weights

    overrides = ["--set", "layers.fc.out=1000"]  # as many classes as ImageNet's
    spec = archspec.load(digits, overrides[1:])
    torch.manual_seed(0)
    model = archspec.build(spec).eval()
    weights = tmp_path / "w1000.pth"
    torch.save(model.state_dict(), weights)
    image = gray(tmp_path / "x.png", (8, 8))
    args = ["predict", str(digits), "--weights", str(weights), str(image), "--topk", "3", *overrides]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    with torch.no_grad():
        top = model(preprocess(Image.open(image), spec)[None]).softmax(-1)[0].topk(3).indices.tolist()
    categories = ResNet18_Weights.DEFAULT.meta["categories"]
    assert [line.split(maxsplit=2)[1:] for line in lines[1:]] == [[str(i), categories[i]] for i in top]
    # --labels still wins.
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"mine {i}\n" for i in range(1000)))
    assert main([*args, "--labels", str(labels)]) == 0
    assert [line.split(maxsplit=2)[2] for line in capsys.readouterr().out.splitlines()[1:]] == [f"mine {i}" for i in top]
    # Without torchvision, or with another number of classes: indices, no error.
    monkeypatch.setitem(sys.modules, "torchvision", None)  # any `import torchvision` now fails
    assert main(args) == 0
    assert [line.split() for line in capsys.readouterr().out.splitlines()[1:]] == [
        [line.split()[0], str(i)] for line, i in zip(lines[1:], top)]
    assert inference.reference_categories(archspec.load(digits)) is None
    monkeypatch.undo()
    assert inference.reference_categories(archspec.load(digits)) is None  # 10 classes: not ImageNet's 1000
    assert inference.reference_categories(spec) == categories


# -- build on meta, train's and bench's output ------------------------------------------------------------------

def test_build_on_meta_computes_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    outputs: list[torch.Tensor] = []
    real_compile = archspec.backend.compiler.compile_spec

    def compile_and_watch(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = real_compile(*args, **kwargs)
        model.register_forward_hook(lambda module, inputs, output: outputs.append(output))
        return model
    monkeypatch.setattr(archspec.backend.compiler, "compile_spec", compile_and_watch)
    assert main(["build", str(SPECS / "resnet50.yaml"), "--device", "meta"]) == 0
    out = capsys.readouterr().out
    assert len(outputs) == 1 and outputs[0].device.type == "meta"
    assert "  output       1x1000  (shapes only on meta)\n" in out and "forward pass" not in out


def test_train_hint_names_the_classifier_and_counts_in_words(digits: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, layer in (("resnet18", "fc"), ("vgg16", "fc8"), ("efficientnet_b0", "classifier"),
                        ("googlenet", "fc")):  # googlenet: the main classifier, not an auxiliary head's
        with pytest.raises(ValueError, match=rf"\(--set layers\.{layer}\.out=10\)$"):
            check_fits_digits(archspec.load(SPECS / f"{name}.yaml"))
    assert main(["train", str(digits), "--epochs", "1", "--batch", "512", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "; 1 epoch of 3 steps, batch 512" in out and "after 1 epoch\n" in out and "1 epochs" not in out


def test_bench_table_fits_a_long_model_name() -> None:
    long = "archspec " + "a_very_long_spec_name_" * 3
    timings = [Timing(long, 123_456_789_012, 8, [0.5, 0.25, 0.75]), Timing("torchvision:resnet18", 11_689_512, 8, [0.1])]
    lines = BenchReport("x", BenchSettings(), "cpu", (3, 8, 8), timings).text().splitlines()[1:4]
    assert lines[1].startswith(f"  {long}  ") and lines[2].startswith("  torchvision:resnet18 ")
    for column in ("params", "images/s", "latency ms", "first call s"):  # right-aligned under its header
        end = lines[0].index(column) + len(column)
        assert all(line[:end].endswith(cell) for line, cell in zip(
            lines[1:], {"params": ("123,456,789,012", "11,689,512"), "images/s": ("16.0", "80.0"),
                        "latency ms": ("500.00", "100.00"), "first call s": ("0.0", "0.0")}[column])), column


def test_on_cuda_the_guard_compares_with_the_free_device_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a GPU machine (torch.cuda.mem_get_info stands in for the card): the limit is half its free memory."""
    from argparse import Namespace

    from archspec.cli.args import check_fits

    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: asked.append(device) or (2 << 30, 80 << 30))
    vgg = archspec.load(SPECS / "vgg16.yaml")  # 528 MiB of parameters
    assert check_fits(Namespace(), vgg, torch.device("cuda:1"), 8).limit_bytes == 1 << 30
    assert asked == [torch.device("cuda:1")]
    with pytest.raises(archspec.SpecError, match=r"at batch 64.*limit 1\.0 GiB \(50% of 2\.0 GiB cuda memory\)"):
        check_fits(Namespace(), vgg, "cuda", 64, training=True, optimizer_states=1)
    assert not check_fits(Namespace(allow_large=True), vgg, "cuda", 64, training=True).fits
    assert check_fits(Namespace(), vgg, torch.device("meta"), 64).limit_bytes is None and len(asked) == 3
