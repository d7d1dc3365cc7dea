"""The documentation a newcomer reads: the README stays a five-minute read, every relative
link of README.md and docs/*.md resolves (file and #heading), and the repository documents
its interfaces itself (no pointer to a contract document outside it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 160


def slugs(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page (outside code fences)."""
    out, seen, fence = set(), {}, False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        if fence or not re.match(r"#{1,6} ", line):
            continue
        text = re.sub(r"[^\w\- ]", "", re.sub(r"^#+ ", "", line).strip().lower())
        text = text.replace(" ", "-")
        n = seen.get(text, 0)
        seen[text] = n + 1
        out.add(text if n == 0 else f"{text}-{n}")
    return out


def test_readme_is_a_five_minute_read():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, "move reference material to docs/"
    for command in ("make demo", "make test"):
        assert any(command in line for line in lines), command


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in slugs(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_no_pointer_to_an_outside_contract_document():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(r"\bSPEC\b|\.\./shared")
    hits = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".yaml", ".yml", ".txt", ".tpl", ".json", ".toml"}:
            continue
        if name.startswith("benchmarks/results/") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{name}:{number}")
    assert not hits, hits


def test_model_defaults_tables_are_what_the_script_computes():
    """docs/MODEL_DEFAULTS.md's tables equal benchmarks/defaults_table.py's output from the
    committed study results (it fails, naming the table, when they drift apart)."""
    import sys

    result = subprocess.run(
        [sys.executable, "benchmarks/defaults_table.py", "--check", "docs/MODEL_DEFAULTS.md"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
