"""Docs that can't drift: every named limit, CLI command and error code is documented."""

from __future__ import annotations

import re
from pathlib import Path

from suanli import errors, limits
from suanli.cli import build_parser
from tests.test_cli import command_parsers

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_every_limit_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    names = [name for name in vars(limits) if name.isupper()]
    assert names
    assert [n for n in names if f"`{n}`" not in text] == []


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    commands = command_parsers(build_parser())
    assert [c for c in commands if f"`suanli {c}" not in text] == []


def test_every_error_code_is_documented() -> None:
    text = (DOCS / "api.md").read_text()
    codes = {cls.default_code for cls in errors.ALL_ERRORS} | {errors.SuanliError.default_code}
    for path in (ROOT / "src" / "suanli").rglob("*.py"):
        if "simulator" not in path.parts:
            codes |= set(re.findall(r'code="([a-z_]+)"', path.read_text()))
    assert sorted(c for c in codes if f"`{c}`" not in text) == []


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert block[0].startswith("./scripts/demo") and block[1].startswith("./scripts/test")
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    used: set[str] = set()
    for path in (ROOT / "src" / "suanli").rglob("*.py"):
        used |= set(re.findall(r'"(SUANLI_[A-Z_]+)"', path.read_text()))
    assert used and sorted(v for v in used if f"`{v}`" not in text) == []
