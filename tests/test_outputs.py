"""Outputs (archspec/files.py): one atomic, no-clobber writer for every file archspec writes. The mode a
plain open() gives, no partial or temporary file after an error, a full disk, SIGTERM, SIGHUP or exit;
of two writers without --force exactly one wins; never over a device, a FIFO, a folder or an input."""
from __future__ import annotations

import errno
import io
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import archspec
from archspec import files
from archspec.cli import main
from archspec.files import OutputError, check_output, save_torch, write_atomic, write_bytes
from conftest import ROOT, SPECS


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_the_mode_is_what_open_gives(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        write_bytes(tmp_path / "out.bin", b"data")
        with open(tmp_path / "plain.bin", "wb") as handle:
            handle.write(b"data")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "out.bin").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode)


def test_an_existing_file_is_replaced_only_with_force(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("mine")
    with pytest.raises(OutputError, match=r"out.txt exists; pass --force to replace it$"):
        write_bytes(out, b"new")
    assert out.read_text() == "mine" and listing(tmp_path) == ["out.txt"]
    write_bytes(out, b"new", force=True)
    assert out.read_text() == "new" and listing(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("hard_links", [True, False])
def test_of_two_writers_without_force_exactly_one_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       hard_links: bool) -> None:
    """Both pass the check before writing (as two builds started together do); the publish decides."""
    if not hard_links:  # a file system without hard links: the name is claimed with O_EXCL instead
        def no_link(src: Any, dst: Any) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "out.bin"
    both_written = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def writer(name: str) -> None:
        def write(tmp: Path) -> None:
            tmp.write_bytes(name.encode() * 1000)
            both_written.wait(timeout=10)

        try:
            write_atomic(out, write)
            outcomes[name] = "wrote"
        except OutputError as exc:
            outcomes[name] = str(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [name for name, outcome in outcomes.items() if outcome == "wrote"]
    assert len(winners) == 1, outcomes
    loser = "b" if winners == ["a"] else "a"
    assert outcomes[loser] == f"{out} exists; pass --force to replace it"
    assert out.read_bytes() == winners[0].encode() * 1000  # whole: the winner's bytes, all of them
    assert listing(tmp_path) == ["out.bin"]


def test_no_file_but_a_regular_one_is_written_over(tmp_path: Path) -> None:
    fifo, folder, sock = tmp_path / "fifo", tmp_path / "folder", tmp_path / "sock"
    os.mkfifo(fifo)
    folder.mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    try:
        for target, kind in [(fifo, "a FIFO"), (folder, "a folder"), (sock, "a socket")]:
            for force in (False, True):
                with pytest.raises(OutputError, match=f"is {kind}, not a regular file; refusing to write over it"):
                    write_bytes(target, b"data", force=force)
        with pytest.raises(OutputError, match="/dev/null is a character device"):
            check_output("/dev/null", force=True)  # (checked only: a test never writes into /dev)
    finally:
        server.close()
    assert stat.S_ISFIFO(fifo.stat().st_mode) and folder.is_dir() and not list(folder.iterdir())
    assert listing(tmp_path) == ["fifo", "folder", "sock"]


def test_the_inputs_are_never_written_over(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text("name: net\n")
    os.link(spec, tmp_path / "alias.yaml")  # another name of the same file
    for target in (spec, tmp_path / "alias.yaml", tmp_path / "." / "net.yaml"):
        with pytest.raises(OutputError, match="refusing to overwrite the input spec"):
            write_bytes(target, b"x", force=True, protect=[spec])
    assert spec.read_text() == "name: net\n"


def enospc_after(limit: int) -> Any:
    """An `open` whose files fail with ENOSPC once `limit` bytes are written, as a full disk does."""
    real_open = open

    class Full(io.RawIOBase):
        def __init__(self, path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> None:
            self.file = real_open(path, mode, *args, **kwargs)
            self.written = 0

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            self.written += len(data)
            if self.written > limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.file.write(data)

        def close(self) -> None:
            self.file.close()
            super().close()

    return lambda path, mode="r", *args, **kwargs: Full(path, mode, *args, **kwargs) if "w" in mode \
        else real_open(path, mode, *args, **kwargs)


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(b"x" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "out.bin"
    with pytest.raises(OutputError, match=f"^no space left on device writing {out}$"):
        write_atomic(out, fill)
    # torch.save's own writer says only "[enforce fail at inline_container.cc]": save_torch hands it a
    # Python file, whose OSError becomes the context of torch's RuntimeError.
    monkeypatch.setattr(files, "open", enospc_after(1000), raising=False)
    with pytest.raises(OutputError, match=f"^no space left on device writing {out}$"):
        save_torch(out, {"w": torch.zeros(10_000)})
    assert listing(tmp_path) == []


def test_python_export_leaves_no_half_of_its_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Its source and OUTPUT.pth: a full disk while writing the source removes the weights just written, and an
    output named .pth (the weights' own name) is refused before anything is written."""
    import torch

    spec, weights, out = tmp_path / "tiny.yaml", tmp_path / "w.pt", tmp_path / "out"
    spec.write_text("name: tiny\ninput: {channels: 3, size: 8}\nlayers: [flatten, {type: linear, out: 4}]\n")
    torch.save(archspec.build(spec).state_dict(), weights)
    run = ["export", str(spec), "--format", "python", "--weights", str(weights), "-o"]
    assert main([*run, str(out / "t.pth")]) == 2
    assert "the Python file and its weights (OUTPUT.pth) would be one file" in capsys.readouterr().err
    real_write_bytes = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        real_write_bytes(self, data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main([*run, str(out / "t.py")]) == 2
    assert capsys.readouterr().err.endswith(f"\narchspec export: no space left on device writing {out / 't.py'}\n")
    assert not out.exists() or listing(out) == []


def test_commands_report_a_full_disk_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(files, "open", enospc_after(100_000), raising=False)
    out = tmp_path / "r18.pt"
    assert main(["build", str(SPECS / "resnet18.yaml"), "--set", "input.size=32", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"archspec build: no space left on device writing {out}\n"
    # pt2: torch.export.save aborts the process on a failed write, so it serialises to memory first and
    # the bytes go through the writer.
    real_write_bytes = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        real_write_bytes(self, data[:1000])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "r18.pt2"
    assert main(["export", str(SPECS / "resnet18.yaml"), "--set", "input.size=32", "--format", "pt2",
                 "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"archspec export: no space left on device writing {out}\n"
    assert listing(tmp_path) == []


def test_commands_refuse_a_fifo_even_with_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "out.svg"
    os.mkfifo(fifo)
    for command in (["build", str(SPECS / "resnet18.yaml")], ["export", str(SPECS / "resnet18.yaml"), "--format", "pt2"],
                    ["diagram", str(SPECS / "resnet18.yaml")]):
        assert main([*command, "-o", str(fifo), *(["--force"] if command[0] != "diagram" else [])]) == 2, command
        assert capsys.readouterr().err.endswith(f"{fifo} is a FIFO, not a regular file; refusing to write over it\n")
    assert listing(tmp_path) == ["out.svg"] and stat.S_ISFIFO(fifo.stat().st_mode)


SIGNALLED = r"""
import sys, time
from pathlib import Path
from archspec.files import write_atomic

def write(tmp):
    tmp.write_bytes(b"x" * 1_000_000)
    print(tmp, flush=True)
    time.sleep(60)

write_atomic(Path(sys.argv[1]), write)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_while_writing_leaves_no_temporary_file(tmp_path: Path, signum: int) -> None:
    process = subprocess.Popen([sys.executable, "-c", SIGNALLED, str(tmp_path / "out.bin")], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    tmp = Path(process.stdout.readline().strip())
    assert tmp.parent == tmp_path and tmp.stat().st_size == 1_000_000  # mid-write
    process.send_signal(signum)
    assert process.wait(timeout=30) == -signum  # it still dies of the signal, as it would have
    assert listing(tmp_path) == []


EXITING = r"""
import sys, threading, time
from pathlib import Path
from archspec.files import write_atomic

started = threading.Event()

def write(tmp):
    tmp.write_bytes(b"x" * 1000)
    started.set()
    time.sleep(60)

threading.Thread(target=write_atomic, args=(Path(sys.argv[1]), write), daemon=True).start()
started.wait()
"""


def test_exit_while_a_thread_writes_leaves_no_temporary_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", EXITING, str(tmp_path / "out.bin")], cwd=ROOT, timeout=60)
    assert result.returncode == 0 and listing(tmp_path) == []


def test_signal_handlers_are_restored(tmp_path: Path) -> None:
    before = {s: signal.getsignal(s) for s in files.CLEANUP_SIGNALS}
    write_bytes(tmp_path / "a", b"a")
    with pytest.raises(OutputError):
        write_bytes(tmp_path / "a", b"b")
    assert {s: signal.getsignal(s) for s in files.CLEANUP_SIGNALS} == before


def test_onnx_with_external_data_is_published_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights past ONNX's 2 GB limit go to OUT.onnx.data: staged under the final names, each file then
    published by the writer (here with the limit lowered to 0 for a small network)."""
    import torch

    from archspec.backend.compiler import example_input
    from archspec.exports.formats import export_program, run_onnx, save_onnx

    spec = archspec.loads("name: small\ninput: {size: 8}\nlayers: [{type: conv, out: 4, kernel: 3, norm: batch, activation: relu}, "
                          "{type: global_pool, flatten: true}, {type: linear, out: 5}]\n")
    model = archspec.build(spec).eval()
    program = export_program(model, spec)
    monkeypatch.setattr(sys.modules["archspec.exports.formats"], "ONNX_SINGLE_FILE_LIMIT", 0)
    out = tmp_path / "small.onnx"
    save_onnx(program, out)
    assert listing(tmp_path) == ["small.onnx", "small.onnx.data"]
    with pytest.raises(OutputError, match="small.onnx exists; pass --force"):
        save_onnx(program, out)
    save_onnx(program, out, force=True)
    assert listing(tmp_path) == ["small.onnx", "small.onnx.data"]
    # A self-contained file never removes a PATH.data it was not asked to write (it may be anything: here the spec).
    monkeypatch.setattr(sys.modules["archspec.exports.formats"], "ONNX_SINGLE_FILE_LIMIT", 10 ** 12)
    other = tmp_path / "other.onnx"
    Path(f"{other}.data").write_text("name: precious\n")
    assert save_onnx(program, other) == [other] and Path(f"{other}.data").read_text() == "name: precious\n"
    x = example_input(spec, batch=3, seed=1)
    with torch.no_grad():
        assert (run_onnx(out, x) - model(x)).abs().max().item() <= 1e-4
