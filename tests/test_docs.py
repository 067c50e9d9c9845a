"""Every ```python and ```bash block in README.md and docs/*.md runs.

* The python blocks of one document run in order in one fresh interpreter (cwd = repository root), so a
  later block can use the names an earlier one defined.
* Each bash block runs with ``bash -e`` in the repository root, in document order, after the python blocks.
* ``<!-- skip-test -->`` right before a block skips it (installation commands, long training runs);
  ``<!-- slow-test -->`` runs it only with ``-m slow``. A reason may follow: ``<!-- skip-test: why -->``.

All blocks of a run share one temporary ``TMPDIR``, so documents write their scratch files with
``tempfile`` / ``${TMPDIR:-/tmp}`` and leave nothing behind. A failure names the file, the block's index
and its first line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [p for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] if p.is_file()]
TIMEOUT_S = 600

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
# "<!-- skip-test -->", optionally with a reason: "<!-- skip-test: creates a venv -->".
MARKER = re.compile(r"^\s*<!--\s*(skip-test|slow-test)\b[^>]*-->\s*$")


@dataclass
class Block:
    doc: Path
    index: int  # position among the doc's runnable blocks, from 0
    language: str
    line: int  # 1-based line of the opening fence
    code: str
    marker: str | None  # "skip-test", "slow-test" or None

    def label(self) -> str:
        return f"{self.doc.relative_to(REPO)} {self.language} block #{self.index} (line {self.line})"


def extract_blocks(doc: Path) -> list[Block]:
    """The ```python / ```bash blocks of a markdown file with their markers."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, language = match["fence"], match["info"].strip().split(" ")[0].lower()
        start = i
        body = []
        i += 1
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        while i < len(lines) and not closing.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # closing fence
        if language in ("python", "py", "bash", "sh", "shell"):
            marker = None
            j = start - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            if j >= 0 and (m := MARKER.match(lines[j])):
                marker = m.group(1)
            kind = "python" if language in ("python", "py") else "bash"
            blocks.append(Block(doc, len(blocks), kind, start + 1, "\n".join(body) + "\n", marker))
    return blocks


# Runs the blocks in one namespace; reports the failing block's index on stderr as JSON.
RUNNER = r"""
import json, sys, traceback
blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for index, label, code in blocks:
    print(f"----- {label}", flush=True)
    try:
        exec(compile(code, label, "exec"), namespace)
    except BaseException as err:
        if isinstance(err, SystemExit) and err.code in (0, None):
            continue
        traceback.print_exc()
        sys.stderr.write("\n@@FAILED@@" + json.dumps(label) + "\n")
        sys.exit(1)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the venv's console scripts (granite-nar)
    return {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "TMPDIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),  # toy models; avoid thread contention
        "HF_HUB_OFFLINE": "1",  # docs must run offline
        "TRANSFORMERS_VERBOSITY": "error",
        "MPLBACKEND": "Agg",
    }


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _selected(blocks: list[Block], language: str, with_slow: bool) -> list[Block]:
    chosen = [b for b in blocks if b.language == language and b.marker != "skip-test"]
    return chosen if with_slow else [b for b in chosen if b.marker != "slow-test"]


def _cases():
    for doc in DOCS:
        blocks = extract_blocks(doc)
        name = str(doc.relative_to(REPO))
        for language in ("python", "bash"):
            fast, every = _selected(blocks, language, False), _selected(blocks, language, True)
            if fast:
                yield pytest.param(doc, language, False, id=f"{name}-{language}")
            if len(every) > len(fast):
                yield pytest.param(doc, language, True, id=f"{name}-{language}-slow", marks=pytest.mark.slow)


CASES = list(_cases())


def test_extract_blocks_reads_markers(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n```python\na = 1\n```\n\n<!-- skip-test: installs things -->\n```bash\npip install x\n```\n"
        "<!-- slow-test -->\n\n````python\nprint('```')\n````\n```text\nnot code\n```\n```sh\necho hi\n```\n"
    )
    blocks = extract_blocks(doc)
    assert [(b.language, b.marker, b.line) for b in blocks] == [
        ("python", None, 2),
        ("bash", "skip-test", 7),
        ("python", "slow-test", 12),
        ("bash", None, 18),
    ]
    assert blocks[2].code == "print('```')\n"


@pytest.mark.skipif(not CASES, reason="no documentation with code blocks")
@pytest.mark.parametrize("doc,language,with_slow", CASES)
def test_doc_code_blocks_run(doc: Path, language: str, with_slow: bool, tmp_path: Path):
    blocks = _selected(extract_blocks(doc), language, with_slow)
    env = _env(tmp_path)
    if language == "python":
        payload = json.dumps([[b.index, b.label(), b.code] for b in blocks])
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER],
            input=payload,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=TIMEOUT_S,
        )
        if proc.returncode != 0:
            failed = re.search(r"@@FAILED@@(.*)", proc.stderr)
            where = json.loads(failed.group(1)) if failed else f"{doc.relative_to(REPO)} python blocks"
            pytest.fail(
                f"{where} failed (exit {proc.returncode}).\n--- stdout ---\n{_tail(proc.stdout)}\n"
                f"--- stderr ---\n{_tail(proc.stderr)}",
                pytrace=False,
            )
        return
    for block in blocks:
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.code],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=TIMEOUT_S,
        )
        if proc.returncode != 0:
            first = block.code.strip().splitlines()[0] if block.code.strip() else ""
            pytest.fail(
                f"{block.label()} failed (exit {proc.returncode}): {first}\n--- stdout ---\n{_tail(proc.stdout)}\n"
                f"--- stderr ---\n{_tail(proc.stderr)}",
                pytrace=False,
            )


PIP_INSTALL = re.compile(r"pip install[^\n`]*")


def test_every_install_line_works_from_a_clone():
    """The package is installed from a clone (``pip install -e ".[extra]"``), not from an index; every
    extra a docs page names exists in pyproject.toml."""
    import tomllib

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    lines = [
        (doc.name, m.group(0)) for doc in DOCS for m in PIP_INSTALL.finditer(doc.read_text(encoding="utf-8"))
    ]
    assert lines
    for doc, line in lines:
        assert "granite_nar[" not in line and "granite-nar[" not in line, f"{doc}: {line!r} needs an index"
        for group in re.findall(r"\.\[([^\]]+)\]", line):
            unknown = {name.strip() for name in group.split(",")} - extras
            assert not unknown, f"{doc}: {line!r} names extras {sorted(unknown)} that pyproject.toml lacks"
