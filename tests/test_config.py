"""Config validation: key paths on every problem, path resolution, sources, extra fields."""

from __future__ import annotations

import pytest

from dedupe.config import ConfigError, load_config


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_relative_paths_resolve_against_the_config_folder(tmp_path, write_config, monkeypatch):
    write_config(tmp_path / "configs", [{"name": "crm", "path": "../data/crm.csv", "id": "id",
                                         "columns": {"email": "email"}}],
                 project={"name": "p", "output_dir": "../out/p"},
                 extra_toml='[engine]\ntemp_directory = "tmp"\n')
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    cfg = load_config("../../configs/dedupe.toml")

    assert cfg.sources[0].path == tmp_path / "data" / "crm.csv"
    assert cfg.output_dir == tmp_path / "out" / "p"
    assert cfg.state == tmp_path / "out" / "p" / "state.duckdb"
    assert cfg.temp_directory == tmp_path / "configs" / "tmp"


def test_output_dir_argument_overrides_the_project_output_dir(tmp_path, write_config, monkeypatch):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id", "columns": {"email": "email"}}],
                        project={"output_dir": "from_config"})
    monkeypatch.chdir(tmp_path)
    cfg = load_config(conf, output_dir="cli_out")
    assert cfg.output_dir == tmp_path / "cli_out"
    assert cfg.state == tmp_path / "cli_out" / "state.duckdb"  # the state follows the outputs


def test_every_problem_is_reported_at_once_each_with_its_key_path(tmp_path, write_config):
    conf = write_config(
        tmp_path,
        [{"name": "CRM", "path": "crm.csv", "id": "id", "columns": {"email": "email"}},
         {"name": "partner", "path": "p.xlsx", "id": "id", "columns": {"email": 3}}],
        extra_toml="[thresholds]\nmatch = 2\n[blocking]\nrules = [\"emial_key\"]\n"
                   "[survivorship]\nsource_priority = [\"nobody\"]\n[judge]\nbackend = \"carrier-pigeon\"\n")
    found = problems(conf)
    expected = ["sources[0].name:", "sources[1].path:", "sources[1].columns.email:", "thresholds.match:",
                "blocking.rules[0]:", "survivorship.source_priority:", "judge.backend:"]
    for prefix in expected:
        assert any(p.startswith(prefix) for p in found), (prefix, found)
    assert len(found) == len(expected), found
    assert all("\n" not in p for p in found)
    # The exception's text puts the config file in front of every line.
    with pytest.raises(ConfigError) as info:
        load_config(conf)
    assert all(line.startswith(f"{conf}: ") for line in str(info.value).splitlines())


@pytest.mark.parametrize("name", ["CRM", "my-crm", "crm source", ""])
def test_source_names_must_be_lowercase_letters_digits_underscores(tmp_path, write_config, name):
    conf = write_config(tmp_path, [{"name": name, "path": "crm.csv", "id": "id", "columns": {"email": "email"}}])
    assert problems(conf) == [f"sources[0].name: '{name}' must match [a-z0-9_]+"]


def test_source_names_must_be_unique(tmp_path, write_config):
    source = {"name": "crm", "path": "crm.csv", "id": "id", "columns": {"email": "email"}}
    conf = write_config(tmp_path, [source, source | {"path": "other.csv"}])
    assert problems(conf) == ["sources: source name 'crm' is used more than once"]


def test_good_names_and_formats_are_accepted(tmp_path, write_config):
    conf = write_config(tmp_path, [
        {"name": "crm_2024", "path": "a.csv", "id": "id", "columns": {"email": "e"}},
        {"name": "b", "path": "b.tsv", "id": "id", "columns": {"email": "e"}},
        {"name": "c", "path": "c.parquet", "id": "id", "columns": {"email": "e"}},
        {"name": "d", "path": "d.jsonl", "id": "id", "columns": {"email": "e"}},
        {"name": "e", "path": "e.json", "id": "id", "columns": {"email": "e"}},
        {"name": "f", "path": "f.dat", "format": "csv", "delimiter": "|", "id": "id", "columns": {"email": "e"}},
    ])
    cfg = load_config(conf)
    assert [(s.name, s.format, s.delimiter) for s in cfg.sources] == [
        ("crm_2024", "csv", None), ("b", "csv", "\t"), ("c", "parquet", None), ("d", "jsonl", None),
        ("e", "json", None), ("f", "csv", "|")]


def test_unsupported_file_type_names_the_path_key(tmp_path, write_config):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.xlsx", "id": "id", "columns": {"email": "e"}}])
    [problem] = problems(conf)
    assert problem.startswith("sources[0].path: unsupported file type '.xlsx'")


@pytest.mark.parametrize("where, toml_edit, expected", [
    ("project", lambda t: t.replace("[project]", "[projct]"),
     "projct: unknown key (did you mean 'project'?)"),
    ("source key", lambda t: t.replace('id = "id"', 'idd = "id"'),
     "sources[0].idd: unknown key (did you mean 'id'?)"),
    ("columns table", lambda t: t.replace("[sources.columns]", "[sources.colums]"),
     "sources[0].colums: unknown key (did you mean 'columns'?)"),
    ("optional key", lambda t: t.replace('id = "id"', 'id = "id"\ndelimeter = ";"'),
     "sources[0].delimeter: unknown key (did you mean 'delimiter'?)"),
    ("section key", lambda t: t + "[thresholds]\nmach = 0.9\n",
     "thresholds.mach: unknown key (did you mean 'match'?)"),
    ("section", lambda t: t + "[blockng]\nmax_block_size = 10\n",
     "blockng: unknown key (did you mean 'blocking'?)"),
])
def test_a_typo_in_a_key_is_one_problem_naming_the_key_and_a_suggestion(tmp_path, write_config, where, toml_edit,
                                                                        expected):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id", "columns": {"email": "e"}}])
    conf.write_text(toml_edit(conf.read_text()))
    assert problems(conf) == [expected]


def test_unknown_canonical_field_names_the_field_and_suggests(tmp_path, write_config):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id",
                          "columns": {"frist_name": "First", "email": "e"}}])
    assert problems(conf) == [
        "sources[0].columns.frist_name: unknown canonical field 'frist_name' (did you mean 'first_name'?)"]

    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id",
                          "columns": {"loyalty_number": "Loyalty", "email": "e"}}])
    [problem] = problems(conf)
    assert problem.startswith("sources[0].columns.loyalty_number: unknown canonical field 'loyalty_number'")
    assert "[fields.NAME]" in problem  # tells the user how to declare it


def test_extra_fields_are_declared_with_a_compare_kind(tmp_path, write_config):
    conf = write_config(
        tmp_path,
        [{"name": "crm", "path": "crm.csv", "id": "id",
          "columns": {"email": "e", "member_no": "Member", "joined": "Joined", "score": "Score"}}],
        extra_toml='[fields.member_no]\ncompare = "exact"\nidentifier = true\n'
                   '[fields.joined]\ncompare = "date"\n[fields.score]\ncompare = "number"\n'
                   '[cluster]\nidentifiers = ["date_of_birth", "member_no"]\n')
    cfg = load_config(conf)
    assert [(f.name, f.compare, f.identifier) for f in cfg.extra_fields] == [
        ("member_no", "exact", True), ("joined", "date", False), ("score", "number", False)]
    assert cfg.record_fields[-3:] == ("member_no", "joined", "score")
    assert cfg.sources[0].columns["member_no"] == ("Member",)
    assert cfg.cluster.identifiers == ("date_of_birth", "member_no")


@pytest.mark.parametrize("toml, expected", [
    ('[fields.member_no]\ncompare = "fuzzy"\n',
     "fields.member_no.compare: 'fuzzy' is not one of exact, string, name, date, number"),
    ("[fields.member_no]\nidentifier = true\n", "fields.member_no.compare: required"),
    ('[fields.member_no]\ncompare = "exact"\nidentifer = true\n',
     "fields.member_no.identifer: unknown key (did you mean 'identifier'?)"),
    ('[fields.email]\ncompare = "exact"\n',
     "fields.email: is a canonical field already; map it directly in [sources.columns]"),
    ('[fields.Member-No]\ncompare = "exact"\n', "fields.Member-No: field names must match [a-z0-9_]+"),
])
def test_bad_extra_field_declarations_name_the_key(tmp_path, write_config, toml, expected):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id", "columns": {"email": "e"}}],
                        extra_toml=toml)
    assert expected in problems(conf)


@pytest.mark.parametrize("given", ["latin-1", "latin1", "ISO-8859-1", "Latin_1"])
def test_encoding_aliases_are_understood(tmp_path, write_config, given):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id", "encoding": given,
                          "columns": {"email": "e"}}])
    assert load_config(conf).sources[0].encoding == "latin-1"


@pytest.mark.parametrize("given", ["cp1252", "no-such-encoding"])
def test_an_encoding_the_reader_cannot_use_is_a_config_problem(tmp_path, write_config, given):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id", "encoding": given,
                          "columns": {"email": "e"}}])
    [problem] = problems(conf)
    assert problem.startswith(f"sources[0].encoding: '{given}' is not supported")
    assert "latin-1" in problem


def test_list_of_columns_and_full_name_mapping(tmp_path, write_config):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id",
                          "columns": {"full_name": ["Given", "Family"], "street": ["No", "Street"]}}])
    assert load_config(conf).sources[0].columns == {"full_name": ("Given", "Family"),
                                                    "street": ("No", "Street")}

    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id",
                          "columns": {"full_name": "Name", "last_name": "Last"}}])
    assert problems(conf) == ["sources[0].columns: map either full_name or first_name/last_name, not both"]

    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id", "columns": {"street": []}}])
    assert problems(conf) == ["sources[0].columns.street: expected a column name or a list of column names"]


def test_required_keys_are_named(tmp_path, write_config):
    conf = write_config(tmp_path, [{"name": "crm", "columns": {"email": "e"}}])
    assert problems(conf) == ["sources[0].path: required", "sources[0].id: required"]
    conf = write_config(tmp_path, [], omit_project=True)
    assert problems(conf) == ["project: required", "sources: required"]


def test_threshold_order_and_wrong_types(tmp_path, write_config):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id", "columns": {"email": "e"}}],
                        extra_toml="[thresholds]\nmatch = 0.5\nreview = 0.6\nfallback = 0.55\n"
                                   "[cluster]\nmax_size = \"big\"\nidentifiers = [{a = 1}]\n")
    found = problems(conf)
    assert "thresholds: need review <= fallback <= match (got 0.6, 0.55, 0.5)" in found
    assert "cluster.max_size: expected an integer, got str" in found
    assert any(p.startswith("cluster.identifiers: ") for p in found)  # reported, not a crash


def test_the_deletion_guard_defaults_to_a_tenth_and_takes_a_share(tmp_path, write_config):
    source = [{"name": "crm", "path": "crm.csv", "id": "id", "columns": {"email": "e"}}]
    assert load_config(write_config(tmp_path, source)).max_deleted_share == 0.1
    assert load_config(write_config(tmp_path, source, project={"name": "p", "max_deleted_share": 1})
                       ).max_deleted_share == 1.0
    conf = write_config(tmp_path, source, project={"name": "p", "max_deleted_share": 1.5})
    assert problems(conf) == ["project.max_deleted_share: 1.5 is not a probability between 0 and 1"]


def test_invalid_toml_and_missing_config_are_one_line_each(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[project]\nname = "x\n', encoding="utf-8")
    [problem] = problems(bad)
    assert problem.startswith("not valid TOML") and "line 2" in problem

    [problem] = problems(tmp_path / "nope.toml")
    assert problem == "config file not found"


def test_delimiter_must_be_one_character(tmp_path, write_config):
    conf = write_config(tmp_path, [{"name": "crm", "path": "crm.csv", "id": "id", "delimiter": "||",
                                    "columns": {"email": "e"}}])
    assert problems(conf) == ["sources[0].delimiter: '||' must be a single character"]


def test_review_budget_is_a_number_or_false(tmp_path, write_config):
    source = [{"name": "crm", "path": "crm.csv", "id": "id", "columns": {"email": "email"}}]
    assert load_config(write_config(tmp_path, source)).thresholds.review_budget == 5.0
    off = write_config(tmp_path, source, extra_toml="[thresholds]\nreview_budget = false\n")
    assert load_config(off).thresholds.review_budget is None
    bad = write_config(tmp_path, source, extra_toml='[thresholds]\nreview_budget = "lots"\n')
    assert [p for p in problems(bad) if p.startswith("thresholds.review_budget:")]
