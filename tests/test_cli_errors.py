"""`dedupe run` on bad input: exit 2, one line naming the problem, earlier outputs untouched.

A successful run is made once per module (``baseline``, a real subprocess); each test copies that
project (data, config and outputs) into its own folder, breaks one thing, runs the CLI and checks the
previous outputs are byte-for-byte what they were. Most tests call the CLI in-process for speed;
``test_the_real_process_*`` repeat a few cases through ``python -m dedupe.cli``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

PUBLISHED = ("clusters.csv", "golden_records.csv", "golden_records.parquet", "pairs.parquet",
             "model.json", "run_report.json")
PROGRESS = re.compile(r"^\[\d\d:\d\d:\d\d\] ")  # the pipeline's progress log, not a problem line


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, write_contacts, write_config, run_cli) -> Path:
    folder = tmp_path_factory.mktemp("baseline")
    write_config(folder, write_contacts(folder))
    result = run_cli("run", folder / "dedupe.toml")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def project(baseline, tmp_path) -> Path:
    """A copy of the baseline project whose out/ holds a previous successful run."""
    folder = tmp_path / "project"
    shutil.copytree(baseline, folder)
    return folder


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in PUBLISHED}


def problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS.match(line)]


def run_failing(cli, project: Path, config: str = "dedupe.toml") -> str:
    """Run the CLI expecting bad input; return the single problem line (checked for the basics)."""
    out = project / "out"
    before = snapshot(out)
    result = cli("run", project / config, cwd=project)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = problem_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no summary, no "outputs:" line for a run that did not happen
    assert snapshot(out) == before, "a failed run changed the previous outputs"
    assert not list(out.glob(".staging-*")), "a failed run left a staging folder"
    return lines[0]


def rewrite_csv(path: Path, edit) -> None:
    """Replace the file's lines with ``edit(lines)``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("".join(line + "\n" for line in edit(lines)), encoding="utf-8")


def set_config(project: Path, old: str, new: str) -> None:
    conf = project / "dedupe.toml"
    text = conf.read_text(encoding="utf-8")
    assert old in text
    conf.write_text(text.replace(old, new, 1), encoding="utf-8")


# ---- the baseline itself -------------------------------------------------------------------------


def test_baseline_run_publishes_outputs_and_counts_the_unparsed_date(baseline):
    """A value that does not parse (19560230) becomes null and is counted; the run succeeds."""
    out = baseline / "out"
    report = json.loads((out / "run_report.json").read_text())
    assert report["records"] == {"crm": 6, "partner": 6}
    assert report["unparsed_values"] == {"crm": {"date_of_birth": 1}}
    assert report["judge"]["skipped"]  # no API key: nothing was sent anywhere
    assert all((out / name).stat().st_size > 0 for name in PUBLISHED)
    assert not list(out.glob(".staging-*"))


def test_output_dir_option_overrides_the_config(project, invoke_cli, tmp_path):
    target = tmp_path / "elsewhere"  # given relative: it is relative to where the command runs
    before = snapshot(project / "out")
    result = invoke_cli("run", project / "dedupe.toml", "--output-dir", "elsewhere", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in target.iterdir()} >= set(PUBLISHED)
    assert str(target) in result.stdout
    assert snapshot(project / "out") == before  # the config's output_dir was not written


# ---- bad input ------------------------------------------------------------------------------------


def test_missing_source_file(project, invoke_cli):
    (project / "partner.csv").unlink()
    line = run_failing(invoke_cli, project)
    assert line == f"error: {project / 'partner.csv'}: file not found (source 'partner')"


def test_missing_source_file_named_by_its_resolved_path(project, invoke_cli):
    set_config(project, 'path = "crm.csv"', 'path = "data/crm_2024.csv"')
    line = run_failing(invoke_cli, project)
    assert line == f"error: {project / 'data' / 'crm_2024.csv'}: file not found (source 'crm')"


def test_mapped_column_absent_names_it_and_lists_the_columns_found(project, invoke_cli):
    rewrite_csv(project / "crm.csv", lambda lines: [lines[0].replace("Last Name", "Surname")] + lines[1:])
    line = run_failing(invoke_cli, project)
    assert line.startswith(f"error: {project / 'crm.csv'}: column 'Last Name' (mapped by "
                           f"columns.last_name of source 'crm') not found")
    assert line.endswith("columns found: Contact ID, First Name, Surname, Email, Company, Phone, Country, "
                         "Last Modified, Birth Date")


def test_duplicate_ids(project, invoke_cli):
    rewrite_csv(project / "partner.csv", lambda lines: [line.replace("P4,", "P2,") for line in lines])
    line = run_failing(invoke_cli, project)
    assert line == f"error: {project / 'partner.csv'}: id 'P2' in column 'id' appears 2 times (rows 2, 4)"


def test_empty_id(project, invoke_cli):
    rewrite_csv(project / "crm.csv", lambda lines: [line.replace("C5,", ",") for line in lines])
    line = run_failing(invoke_cli, project)
    assert line == f"error: {project / 'crm.csv'}: row 5 (line 6) has an empty id in column 'Contact ID'"


@pytest.mark.parametrize("content, problem", [(b"", "file is empty"),
                                              (b"id,full_name,email_address\n", "file has no records")])
def test_empty_file(project, invoke_cli, content, problem):
    (project / "partner.csv").write_bytes(content)
    line = run_failing(invoke_cli, project)
    assert line == f"error: {project / 'partner.csv'}: {problem} (source 'partner')"


def test_non_utf8_file_without_encoding(project, invoke_cli):
    crm = project / "crm.csv"
    crm.write_bytes(crm.read_bytes().replace(b"Patricia", "Patrícia".encode("latin-1")))
    line = run_failing(invoke_cli, project)
    assert line == (f"error: {crm}: not valid UTF-8 (line 7); set encoding = \"latin-1\" (or the file's "
                    f"encoding) for source 'crm'")


def test_the_same_file_with_its_encoding_runs_and_keeps_the_accent(project, invoke_cli):
    crm = project / "crm.csv"
    crm.write_bytes(crm.read_bytes().replace(b"Patricia", "Patrícia".encode("latin-1")))
    set_config(project, 'path = "crm.csv"', 'path = "crm.csv"\nencoding = "latin-1"')
    result = invoke_cli("run", project / "dedupe.toml")
    assert result.returncode == 0, result.stderr
    golden = (project / "out" / "golden_records.csv").read_text(encoding="utf-8")
    assert "Patrícia" in golden


@pytest.mark.parametrize("edit, reason", [
    (lambda line: line.replace("C3,Robert,Brown,bob.brown@initech.com", "C3,Robert Brown bob.brown@initech.com"),
     "Expected Number of Columns: 9 Found: 7"),
    (lambda line: line.replace("C3,Robert,", 'C3,"Robert,'), "unterminated quote"),
])
def test_malformed_csv_row(project, invoke_cli, edit, reason):
    rewrite_csv(project / "crm.csv", lambda lines: [edit(line) for line in lines])
    line = run_failing(invoke_cli, project)
    assert line.startswith(f"error: {project / 'crm.csv'}: malformed CSV at line 4: ")
    assert reason in line


def test_unknown_canonical_field(project, invoke_cli):
    set_config(project, 'first_name = "First Name"', 'frist_name = "First Name"')
    line = run_failing(invoke_cli, project)
    assert line == (f"error: {project / 'dedupe.toml'}: sources[0].columns.frist_name: unknown canonical "
                    f"field 'frist_name' (did you mean 'first_name'?)")


@pytest.mark.parametrize("old, new, key", [
    ('id = "Contact ID"', 'idd = "Contact ID"', "sources[0].idd: unknown key (did you mean 'id'?)"),
    ("[project]", "[projects]", "projects: unknown key (did you mean 'project'?)"),
    ('date_format = "', 'dateformat = "', "sources[0].dateformat: unknown key (did you mean 'date_format'?)"),
])
def test_config_typo_in_a_key(project, invoke_cli, old, new, key):
    set_config(project, old, new)
    line = run_failing(invoke_cli, project)
    assert line == f"error: {project / 'dedupe.toml'}: {key}"


def test_every_config_problem_gets_its_own_line(project, invoke_cli):
    set_config(project, 'name = "crm"', 'name = "CRM"')
    set_config(project, 'first_name = "First Name"', 'frist_name = "First Name"')
    before = snapshot(project / "out")
    result = invoke_cli("run", project / "dedupe.toml")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {project / 'dedupe.toml'}: sources[0].name: 'CRM' must match [a-z0-9_]+",
        f"error: {project / 'dedupe.toml'}: sources[0].columns.frist_name: unknown canonical field "
        f"'frist_name' (did you mean 'first_name'?)",
    ]
    assert snapshot(project / "out") == before


def test_invalid_toml(project, invoke_cli):
    set_config(project, '[project]\nname = "t"', '[project]\nname = "t')
    line = run_failing(invoke_cli, project)
    assert line.startswith(f"error: {project / 'dedupe.toml'}: not valid TOML: ")
    assert "line 2" in line


def test_missing_config(project, invoke_cli):
    line = run_failing(invoke_cli, project, config="nope.toml")
    assert line == f"error: {project / 'nope.toml'}: config file not found"


@pytest.mark.parametrize("breakage, expected", [
    (lambda p: (p / "partner.csv").unlink(), "partner.csv: file not found (source 'partner')"),
    (lambda p: (p / "crm.csv").write_text("Contact ID,First Name\nC1,Ann\nC2\n"),
     "crm.csv: malformed CSV at line 3: Expected Number of Columns: 2 Found: 1"),
    (lambda p: set_config(p, "[[sources]]", "[[sources]]\nnmae = 'x'"),
     "dedupe.toml: sources[0].nmae: unknown key (did you mean 'name'?)"),
])
def test_the_real_process_exits_2_with_one_line(project, run_cli, breakage, expected):
    breakage(project)
    line = run_failing(run_cli, project)
    assert line == f"error: {project}/{expected}"
