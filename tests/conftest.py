"""Shared fixtures: write a config, a tiny two-source contact dataset, run the real CLI."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Two exports of overlapping people with different schemas; crm's C2 has an impossible birth date.
CRM_HEADER = ["Contact ID", "First Name", "Last Name", "Email", "Company", "Phone", "Country",
              "Last Modified", "Birth Date"]
CRM_ROWS = [
    ["C1", "John", "Smith", "john.smith@acme.com", "Acme Inc", "+1 415 555 0101", "US", "01/15/2024 10:00", "19560203"],
    ["C2", "Mary", "Jones", "mary.jones@globex.com", "Globex", "+1 212 555 0102", "US", "02/20/2024 11:30", "19560230"],
    ["C3", "Robert", "Brown", "bob.brown@initech.com", "Initech", "+1 512 555 0103", "US", "03/05/2024 09:15", ""],
    ["C4", "Linda", "Garcia", "linda@umbrella.io", "Umbrella", "+44 20 7946 0104", "GB", "04/01/2024 08:00", ""],
    ["C5", "James", "Miller", "jmiller@hooli.com", "Hooli", "+1 650 555 0105", "US", "05/11/2024 14:45", ""],
    ["C6", "Patricia", "Davis", "pdavis@stark.com", "Stark Industries", "+1 310 555 0106", "US", "06/30/2024 16:20", ""],
]
PARTNER_HEADER = ["id", "full_name", "email_address", "organization", "phone_number", "country_code", "updated"]
PARTNER_ROWS = [
    ["P1", "John Smith", "john.smith@acme.com", "ACME", "4155550101", "US", "2024-01-20"],
    ["P2", "Mary Jones", "mary.jones@globex.com", "Globex Corp", "2125550102", "US", "2024-02-25"],
    ["P3", "Bob Brown", "bob.brown@initech.com", "Initech LLC", "5125550103", "US", "2024-03-10"],
    ["P4", "Linda Garcia", "linda@umbrella.io", "Umbrella Corp", "+442079460104", "GB", "2024-04-02"],
    ["P5", "Susan Clark", "sclark@wayne.com", "Wayne Enterprises", "3125550199", "US", "2024-05-01"],
    ["P6", "Kevin Lewis", "klewis@cyberdyne.com", "Cyberdyne", "4085550198", "US", "2024-06-01"],
]
CRM_SOURCE = {
    "name": "crm", "path": "crm.csv", "id": "Contact ID", "date_format": "%m/%d/%Y %H:%M",
    "columns": {"first_name": "First Name", "last_name": "Last Name", "email": "Email",
                "company": "Company", "phone": "Phone", "country": "Country",
                "updated_at": "Last Modified", "date_of_birth": "Birth Date"},
}
PARTNER_SOURCE = {
    "name": "partner", "path": "partner.csv", "id": "id",
    "columns": {"full_name": "full_name", "email": "email_address", "company": "organization",
                "phone": "phone_number", "country": "country_code", "updated_at": "updated"},
}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def render_config(sources: list[dict], extra_toml: str = "", project: dict | None = None) -> str:
    """TOML text: [project] (if given), one [[sources]] per dict (its "columns" as a sub-table)."""
    parts = []
    if project is not None:
        parts.append("[project]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in project.items()))
    for source in sources:
        lines = ["[[sources]]"] + [f"{k} = {_toml(v)}" for k, v in source.items() if k != "columns"]
        if "columns" in source:
            lines.append("[sources.columns]")
            lines += [f"{_key(k)} = {_toml(v)}" for k, v in source["columns"].items()]
        parts.append("\n".join(lines) + "\n")
    parts.append(extra_toml)
    return "\n".join(parts)


DEFAULT_PROJECT = {"name": "t", "output_dir": "out"}


def write_config_file(folder: Path, sources: list[dict], extra_toml: str = "",
                      project: dict | None = None, name: str = "dedupe.toml",
                      omit_project: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if project is None and not omit_project:
        project = DEFAULT_PROJECT
    path = folder / name
    path.write_text(render_config(sources, extra_toml, project), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def write_config():
    """write_config(folder, sources, extra_toml="", project=None, name="dedupe.toml") -> path.

    ``project`` defaults to ``{name = "t", output_dir = "out"}``; ``omit_project=True`` leaves the
    table out. Relative paths in the config resolve against ``folder``."""
    return write_config_file


def write_table(path: Path, header: list[str] | None, rows: list[list[str]], encoding: str = "utf-8",
                delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        if header is not None:
            w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def write_csv():
    """write_csv(path, header, rows, encoding="utf-8", delimiter=",") -> path."""
    return write_table


def write_contacts_files(folder: Path) -> list[dict]:
    write_table(folder / "crm.csv", CRM_HEADER, CRM_ROWS)
    write_table(folder / "partner.csv", PARTNER_HEADER, PARTNER_ROWS)
    return [json.loads(json.dumps(CRM_SOURCE)), json.loads(json.dumps(PARTNER_SOURCE))]


@pytest.fixture(scope="session")
def write_contacts():
    """write_contacts(folder): write crm.csv and partner.csv there; return their [[sources]] specs."""
    return write_contacts_files


@pytest.fixture
def contacts(tmp_path) -> list[dict]:
    """crm.csv and partner.csv in tmp_path; their [[sources]] specs (a fresh copy to edit)."""
    return write_contacts_files(tmp_path)


def cli_env() -> dict[str, str]:
    """The environment for a CLI run: no API key, so the LLM judge is skipped and nothing is sent."""
    return {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}


@pytest.fixture(scope="session")
def run_cli():
    """run_cli(*args, cwd=None): ``python -m dedupe.cli ARGS`` in a subprocess, without an API key."""

    def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dedupe.cli", *map(str, args)], cwd=cwd,
                              env=cli_env(), capture_output=True, text=True, timeout=120)

    return run


@pytest.fixture
def invoke_cli(monkeypatch):
    """invoke_cli(*args, cwd=None): the same CLI in-process (typer's CliRunner), much faster.

    Returns a CompletedProcess like ``run_cli``; an unexpected exception is re-raised."""
    from typer.testing import CliRunner

    from dedupe.cli import app

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        result = CliRunner().invoke(app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    return run
