"""The docs run: every command, spec and Python example shown in README.md and docs/*.md is executed here
and its printed output compared with what the page shows, so the docs cannot drift from the code.

What each fenced block of a page means to this test:
- A block whose lines start with `$ ` is a terminal session: each command (a trailing `\\` continues it)
  runs in a scratch folder holding the page's files (below) beside `specs/`, `tests/` and `cli.py`, and
  its output (stdout, then stderr) must equal the lines shown after it. A line `...` stands for any
  number of lines; durations (`7 ms`, `1.2 s`) are compared as numbers of their unit, not by value.
- A ```yaml block right after `<!-- file: NAME -->` is written to NAME in that folder before any command
  of the page runs, and `cli.py validate NAME` must accept it (`<!-- file: NAME (invalid) -->`: refuse it).
- A ```yaml block whose first line is `# specs/NAME.yaml` quotes a bundled spec: its lines (comments and
  `...` lines aside) must appear in that file, in order.
- Any other ```yaml block must at least be valid YAML.
- A block of lines `tests/broken/NAME.yaml:LINE:COL: ...` quotes error messages: each must be exactly what
  `cli.py validate tests/broken/NAME.yaml` prints.
- A block right after `<!-- walk: NAME -->` is the table of `spec.analyse().walk()` for NAME.
- A ```python block runs (in a fresh interpreter, in that folder, after the page's files are written)
  unless the line before its fence is `<!-- not run: why -->`.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import archspec
from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DURATION = re.compile(r"\b\d+(?:\.\d+)?( ?)(ms|s|min)\b")
FILE_MARK = re.compile(r"<!-- file: (\S+)( \(invalid\))? -->")
NOT_RUN = re.compile(r"<!-- not run: .+ -->")
WALK_MARK = re.compile(r"<!-- walk: (\S+) -->")
ERROR_LINE = re.compile(r"^(tests/broken/[\w.-]+\.yaml):\d+:\d+: ")
COMMAND_TIMEOUT = 300


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    mark: str  # the non-blank line before the fence

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        indent, end = len(opening.group(1)), i + 1
        while not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        body = "\n".join(line[indent:] for line in lines[i + 1:end])
        found.append(Block(page, i + 1, opening.group(2), body, before))
        i = end + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
SESSIONS = [b for b in ALL_BLOCKS if b.text.startswith("$ ")]
PYTHON = [b for b in ALL_BLOCKS if b.lang == "python" and not NOT_RUN.fullmatch(b.mark)]
ERRORS = [b for b in ALL_BLOCKS if b.text and all(ERROR_LINE.match(line) for line in b.text.splitlines())]


def page_files(page: Path) -> dict[str, tuple[str, bool]]:
    """{file name: (text, valid)} of the page's `<!-- file: NAME -->` blocks."""
    files = {}
    for block in blocks(page):
        mark = FILE_MARK.fullmatch(block.mark)
        if mark:
            files[mark.group(1)] = (block.text + "\n", mark.group(2) is None)
    return files


def scratch(page: Path, folder: Path) -> Path:
    """A folder holding the page's files beside a copy of specs/ and links to tests/ and cli.py."""
    shutil.copytree(ROOT / "specs", folder / "specs")  # a page may add a spec of its own there
    for name in ("tests", "cli.py"):
        (folder / name).symlink_to(ROOT / name)
    for name, (text, _) in page_files(page).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def run(command: str, cwd: Path) -> str:
    """stdout then stderr of one shell command, as a terminal shows them (`python` is this interpreter)."""
    if command.startswith("python "):
        command = shlex.quote(sys.executable) + command[len("python"):]
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          env=env)
    return (done.stdout + done.stderr).rstrip("\n")


def session(text: str) -> list[tuple[str, list[str]]]:
    """[(command, the output lines shown after it)] of a terminal block."""
    steps: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        command = lines[i][2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        while shown and not shown[-1].strip():
            shown.pop()
        steps.append((command, shown))
    return steps


def normalise(line: str) -> str:
    return DURATION.sub(lambda m: f"N{m.group(1)}{m.group(2)}", line.rstrip())


def matches(shown: list[str], printed: list[str]) -> bool:
    """Whether `printed` is `shown`, a `...` line standing for any number of lines."""
    if not shown:
        return not printed
    if shown[0].strip() == "...":
        return any(matches(shown[1:], printed[k:]) for k in range(len(printed) + 1))
    return bool(printed) and normalise(shown[0]) == normalise(printed[0]) and matches(shown[1:], printed[1:])


@pytest.mark.parametrize("block", SESSIONS, ids=[b.id for b in SESSIONS])
def test_terminal_session_prints_what_the_page_shows(block: Block, tmp_path: Path) -> None:
    folder = scratch(block.page, tmp_path)
    for command, shown in session(block.text):
        printed = run(command, folder).splitlines()
        assert matches(shown, printed), (
            f"{block.id}: `{command}` prints\n" + "\n".join(printed) + "\n\nbut the page shows\n" + "\n".join(shown))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_spec_files_on_the_page_validate(page: Path, tmp_path: Path) -> None:
    folder = scratch(page, tmp_path)
    for name, (_, valid) in page_files(page).items():
        done = subprocess.run([sys.executable, "cli.py", "validate", name], cwd=folder, capture_output=True, text=True)
        assert (done.returncode == 0) == valid, f"{page.name}: {name}: {done.stdout}{done.stderr}"


def quoted_spec(block: Block) -> Path | None:
    first = block.text.splitlines()[0] if block.text else ""
    found = re.match(r"# (specs/[\w.-]+\.yaml)\b", first)
    return ROOT / found.group(1) if found else None


YAML = [b for b in ALL_BLOCKS if b.lang == "yaml"]


def code(line: str) -> str:
    """A YAML line without its trailing comment."""
    return line.split(" #", 1)[0].rstrip()


@pytest.mark.parametrize("block", YAML, ids=[b.id for b in YAML])
def test_yaml_on_the_page_is_yaml_and_quotes_are_true(block: Block) -> None:
    quoted = quoted_spec(block)
    if quoted is None:
        yaml.safe_load(block.text)
        return
    source = [code(line) for line in quoted.read_text(encoding="utf-8").splitlines()]
    position = 0
    for line in block.text.splitlines()[1:]:
        if not code(line).strip() or line.strip() == "..." or line.lstrip().startswith("#"):
            continue
        assert code(line) in source[position:], f"{block.id}: {quoted.name} has no line {line!r} (after line {position})"
        position = source.index(code(line), position) + 1


WALKS = [b for b in ALL_BLOCKS if WALK_MARK.fullmatch(b.mark)]


@pytest.mark.parametrize("block", WALKS, ids=[b.id for b in WALKS])
def test_walk_tables_are_the_analysis(block: Block, tmp_path: Path) -> None:
    """`<!-- walk: NAME -->`: the table lists every node of `spec.analyse().walk()`: path, type, output,
    params, MACs (and the drop rate, where the table has that column)."""
    name = WALK_MARK.fullmatch(block.mark).group(1)
    spec = archspec.load(scratch(block.page, tmp_path) / name)
    shown = [line.split() for line in block.text.splitlines()]
    columns = len(shown[0])
    printed = [[n.path, n.type, "x".join(map(str, n.out_shape)), f"{n.params:,}", f"{n.macs:,}", f"{n.drop_rate:g}"][:columns]
               for n in spec.analyse().walk() if n.path]
    assert shown == printed


@pytest.mark.parametrize("block", ERRORS, ids=[b.id for b in ERRORS])
def test_quoted_error_messages_are_real(block: Block) -> None:
    for line in block.text.splitlines():
        file = ERROR_LINE.match(line).group(1)
        printed = run(f"python cli.py validate {file}", ROOT)
        assert printed == line, f"{block.id}: validate {file} prints\n{printed}\nbut the page shows\n{line}"


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example_runs(block: Block, tmp_path: Path) -> None:
    folder = scratch(block.page, tmp_path)
    done = subprocess.run([sys.executable, "-c", block.text], cwd=folder, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"{block.id} fails:\n{done.stderr[-3000:]}"


def test_every_block_is_checked() -> None:
    """Each block is run or checked by a test above, or is plainly not a command (a formula, a pipeline)."""
    checked = {id(b) for b in [*SESSIONS, *PYTHON, *ERRORS, *YAML, *WALKS]}
    unchecked = [b.id for b in ALL_BLOCKS if id(b) not in checked and not NOT_RUN.fullmatch(b.mark)
                 and (b.lang not in ("", "text", "sh") or "cli.py" in b.text)]
    assert not unchecked, f"blocks no test runs (write commands as `$ python cli.py ...`): {unchecked}"


def test_the_top_level_keys_are_all_documented() -> None:
    """Section 2 lists every top-level key of a spec, in its opening sentence and in its table."""
    text = (ROOT / "docs" / "spec-language.md").read_text(encoding="utf-8")
    section = text[text.index("## 2 File structure"):text.index("## 3 ")]
    sentence = section[:section.index("Any other key is an error")]
    keys = {*archspec.Spec.model_fields, "extends"}
    assert {k for k in keys if f"`{k}`" not in sentence} == set()
    assert {k for k in keys if f"| `{k}` |" not in section} == set()
