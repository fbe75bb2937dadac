"""The docs as a newcomer reads them: a short front page, links that resolve, and commands that
the tool accepts as written (the demo itself runs in tests/e2e/test_readme.py)."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from nas_mnist.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "studies" / "README.md",
                *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", prose, re.M)}


def _links(page: Path):
    prose = FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in LINK.findall(prose):
        if not re.match(r"[a-z]+:", target):
            yield target


def _commands(page: Path) -> list[str]:
    """Every `nas-mnist ...` line of the page's shell blocks, continuations joined."""
    found = []
    for lang, block in FENCE.findall(page.read_text(encoding="utf-8")):
        if lang not in ("bash", "sh"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line.split("#", 1)[0]):
                part = part.strip()
                if part.startswith("nas-mnist "):
                    found.append(part)
    return found


def test_the_front_page_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert not broken, broken


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## Two words\n\n[ok](#two-words) [bad](#three) "
                                   "[gone](b.md)\n", encoding="utf-8")
    links = list(_links(tmp_path / "a.md"))
    assert links == ["#two-words", "#three", "b.md"]
    assert "two-words" in _anchors(tmp_path / "a.md") and "three" not in _anchors(tmp_path / "a.md")


def _parse(command: str):
    words = shlex.split(command.replace("$RANDOM", "7"))[1:]
    try:
        build_parser().parse_args(words)
    except SystemExit as err:  # argparse's way out, e.g. for --help
        assert err.code == 0, command


@pytest.mark.parametrize("page", [p for p in PAGES if _commands(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_in_the_docs_parses(page):
    for command in _commands(page):
        _parse(command)


def test_the_command_check_refuses_a_flag_that_does_not_exist():
    with pytest.raises(Exception):
        _parse("nas-mnist search --budget 10000 --no-such-flag")


def test_the_compose_example_runs_a_command_the_tool_accepts():
    compose = yaml.safe_load((ROOT / "examples" / "several-machines" / "compose.yaml")
                             .read_text(encoding="utf-8"))
    shell = compose["services"]["worker"]["command"]
    inner = shlex.split(shell)[2]  # sh -c '...'
    _parse(re.sub(r"\$\$\(.*?\)", "7", inner))
    dockerfile = ROOT / compose["services"]["worker"]["build"]["dockerfile"]
    assert dockerfile.is_file()


def test_benchmark_commands_name_scripts_and_flags_that_exist():
    for page in PAGES:
        for lang, block in FENCE.findall(page.read_text(encoding="utf-8")):
            for line in block.splitlines():
                match = re.match(r"\s*python (benchmarks/\S+\.py)(.*)", line.split("#", 1)[0])
                if not match:
                    continue
                source = (ROOT / match.group(1)).read_text(encoding="utf-8")
                for flag in re.findall(r"(--[a-z][\w-]*)", match.group(2)):
                    assert f'"{flag}"' in source or f"'{flag}'" in source, (page.name, line)
