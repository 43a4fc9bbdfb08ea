"""Ingest: mapping onto canonical records, formats, encodings, unparsed values, bad input."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pandas as pd
import pytest

from dedupe.config import load_config
from dedupe.ingest import InputError, ingest

PEOPLE = pd.DataFrame({
    "pid": [101, 102, 103],
    "given": ["Ann", "Bob", "Cleo"],
    "family": ["Lee", "Marsh", "Nunez"],
    "mail": ["ann@x.org", "bob@y.org", None],
    "born": ["1980-04-01", "19560230", "1990-12-31"],
})
PEOPLE_SOURCE = {"name": "people", "id": "pid",
                 "columns": {"first_name": "given", "last_name": "family", "email": "mail",
                             "date_of_birth": "born"}}


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def records(con, *columns: str) -> list[tuple]:
    cols = ", ".join(("source", "record_id") + columns)
    return con.execute(f"SELECT {cols} FROM records ORDER BY rid").fetchall()


@pytest.fixture
def run_ingest(con, write_config, tmp_path):
    """run_ingest(sources, extra_toml=""): write a config in tmp_path and ingest it into ``con``."""
    def run(sources: list[dict], extra_toml: str = ""):
        return ingest(con, load_config(write_config(tmp_path, sources, extra_toml)))

    return run


@pytest.fixture
def input_error(run_ingest):
    """input_error(sources, extra_toml=""): the one-line InputError message ingest raises."""

    def check(sources, extra_toml="") -> str:
        with pytest.raises(InputError) as info:
            run_ingest(sources, extra_toml)
        message = str(info.value)
        assert "\n" not in message
        return message

    return check


def test_two_sources_with_different_schemas_map_onto_one_record_table(con, run_ingest, contacts):
    report = run_ingest(contacts)
    assert report.records == {"crm": 6, "partner": 6}
    rows = records(con, "first_name", "last_name", "full_name", "email", "company", "updated_at")
    assert rows[0] == ("crm", "C1", "John", "Smith", None, "john.smith@acme.com", "Acme Inc",
                       dt.datetime(2024, 1, 15, 10, 0))
    assert rows[6] == ("partner", "P1", None, None, "John Smith", "john.smith@acme.com", "ACME",
                       dt.datetime(2024, 1, 20))
    # rid is dense and ordered by source (config order) then record id
    assert [r[0] for r in con.execute("SELECT rid FROM records ORDER BY rid").fetchall()] == list(range(1, 13))


def test_a_date_that_does_not_parse_becomes_null_and_is_counted(con, run_ingest, contacts):
    report = run_ingest(contacts)
    born = dict(con.execute("SELECT record_id, date_of_birth FROM records WHERE source = 'crm'").fetchall())
    assert born["C1"] == dt.date(1956, 2, 3)
    assert born["C2"] is None  # 19560230: there is no 30 February
    assert born["C3"] is None  # empty: null, but not "unparsed"
    assert report.unparsed == {"crm": {"date_of_birth": 1}}


def test_unparsed_counts_cover_timestamps_and_typed_extra_fields(con, run_ingest, write_csv, tmp_path):
    write_csv(tmp_path / "a.csv", ["id", "email", "seen", "joined", "score"], [
        ["1", "a@x.org", "2024-01-02 03:04:05", "2020-01-01", "3.5"],
        ["2", "b@x.org", "yesterday", "2020-13-45", "n/a"],
        ["3", "c@x.org", "", "not a date", "7"],
    ])
    report = run_ingest([{"name": "a", "path": "a.csv", "id": "id",
                         "columns": {"email": "email", "updated_at": "seen", "joined": "joined",
                                     "score": "score"}}],
                       extra_toml='[fields.joined]\ncompare = "date"\n[fields.score]\ncompare = "number"\n')
    assert report.unparsed == {"a": {"updated_at": 1, "joined": 2, "score": 1}}
    assert records(con, "updated_at", "joined", "score") == [
        ("a", "1", dt.datetime(2024, 1, 2, 3, 4, 5), dt.date(2020, 1, 1), 3.5),
        ("a", "2", None, None, None),
        ("a", "3", None, None, 7.0),
    ]


def test_a_list_of_columns_is_joined_with_a_space(con, run_ingest, write_csv, tmp_path):
    write_csv(tmp_path / "a.csv", ["id", "Given", "Family", "No", "Street"], [
        ["1", "Mary", "Ann Jones", "12", "Main St"],
        ["2", " Bob ", "", "", " High Rd "],
        ["3", "", "", "", ""],
    ])
    run_ingest([{"name": "a", "path": "a.csv", "id": "id",
                "columns": {"full_name": ["Given", "Family"],
                            "street": ["No", "Street"]}}])
    assert records(con, "full_name", "street") == [
        ("a", "1", "Mary Ann Jones", "12 Main St"),
        ("a", "2", "Bob", "High Rd"),  # empty parts are skipped, not turned into double spaces
        ("a", "3", None, None),
    ]


ACCENTED = [["1", "José", "Müller", "Zürich"], ["2", "François", "Ødegård", "São Paulo"]]


def test_latin1_file_with_encoding_keeps_its_accents(con, run_ingest, write_csv, tmp_path):
    write_csv(tmp_path / "legacy.csv", ["id", "first", "last", "city"], ACCENTED, encoding="latin-1")
    run_ingest([{"name": "legacy", "path": "legacy.csv", "id": "id",
                "encoding": "latin-1",
                "columns": {"first_name": "first", "last_name": "last",
                            "city": "city"}}])
    assert records(con, "first_name", "last_name", "city") == [
        ("legacy", "1", "José", "Müller", "Zürich"), ("legacy", "2", "François", "Ødegård", "São Paulo")]


def test_latin1_file_without_encoding_is_refused_with_the_fix(input_error, write_csv, tmp_path):
    write_csv(tmp_path / "legacy.csv", ["id", "first", "last", "city"],
              [["0", "Ann", "Lee", "Oslo"]] + ACCENTED, encoding="latin-1")
    message = input_error([{"name": "legacy", "path": "legacy.csv", "id": "id",
                           "columns": {"first_name": "first"}}])
    assert message.startswith(f"{tmp_path / 'legacy.csv'}: not valid UTF-8 (line 3)")
    assert 'encoding = "latin-1"' in message and "'legacy'" in message


def test_latin1_header_without_encoding_is_refused_too(input_error, write_csv, tmp_path):
    write_csv(tmp_path / "legacy.csv", ["id", "prénom"], [["1", "Ann"]], encoding="latin-1")
    message = input_error([{"name": "legacy", "path": "legacy.csv", "id": "id",
                           "columns": {"first_name": "prénom"}}])
    assert "not valid UTF-8 (line 1)" in message


def test_utf8_byte_order_mark_is_not_part_of_the_first_column(con, run_ingest, tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffid,email\n1,a@x.org\n".encode("utf-8"))
    run_ingest([{"name": "bom", "path": "bom.csv", "id": "id",
                "columns": {"email": "email"}}])
    assert records(con, "email") == [("bom", "1", "a@x.org")]


def _write(fmt: str, path):
    if fmt == "tsv":
        PEOPLE.to_csv(path, sep="\t", index=False)
    elif fmt == "parquet":
        frame = PEOPLE.assign(born=pd.to_datetime(PEOPLE.born, format="%Y-%m-%d", errors="coerce").dt.date)
        frame.to_parquet(path, index=False)
    elif fmt == "jsonl":
        PEOPLE.to_json(path, orient="records", lines=True)
    else:
        PEOPLE.to_json(path, orient="records")


@pytest.mark.parametrize("fmt", ["tsv", "parquet", "jsonl", "json"])
def test_other_formats_ingest_to_the_same_records(con, run_ingest, tmp_path, fmt):
    _write(fmt, tmp_path / f"people.{fmt}")
    report = run_ingest([PEOPLE_SOURCE | {"path": f"people.{fmt}"}])
    assert report.records == {"people": 3}
    assert records(con, "first_name", "last_name", "email", "date_of_birth") == [
        ("people", "101", "Ann", "Lee", "ann@x.org", dt.date(1980, 4, 1)),
        ("people", "102", "Bob", "Marsh", "bob@y.org", None),
        ("people", "103", "Cleo", "Nunez", None, dt.date(1990, 12, 31)),
    ]
    # The impossible date is counted wherever it comes from (parquet holds it as a real null).
    assert report.unparsed == ({} if fmt == "parquet" else {"people": {"date_of_birth": 1}})


def test_semicolon_csv_is_read_without_configuring_a_delimiter(con, run_ingest, write_csv, tmp_path):
    write_csv(tmp_path / "eu.csv", ["id", "name", "city"], [["1", "Ann Lee", "Lyon"], ["2", "Bob, Jr", "Nice"]],
              delimiter=";")
    run_ingest([{"name": "eu", "path": "eu.csv", "id": "id",
                "columns": {"full_name": "name", "city": "city"}}])
    assert records(con, "full_name", "city") == [("eu", "1", "Ann Lee", "Lyon"), ("eu", "2", "Bob, Jr", "Nice")]


def test_headerless_csv_is_mapped_by_column_position_names(con, run_ingest, tmp_path):
    (tmp_path / "raw.csv").write_text("1,Ann Lee,a@x.org\n2,Bob Marsh,b@x.org\n", encoding="utf-8")
    run_ingest([{"name": "raw", "path": "raw.csv", "id": "column0", "header": False,
                 "columns": {"full_name": "column1", "email": "column2"}}])
    assert records(con, "full_name", "email") == [("raw", "1", "Ann Lee", "a@x.org"),
                                                 ("raw", "2", "Bob Marsh", "b@x.org")]


def test_repeated_and_blank_header_names_get_distinct_columns(con, run_ingest, tmp_path):
    (tmp_path / "a.csv").write_text("id,email,email,,city\n1,a@x.org,b@x.org,?,Oslo\n", encoding="utf-8")
    run_ingest([{"name": "a", "path": "a.csv", "id": "id",
                 "columns": {"email": "email_1", "company": "column3", "city": "city"}}])
    assert records(con, "email", "company", "city") == [("a", "1", "b@x.org", "?", "Oslo")]


def test_utf16_file_with_its_encoding(con, run_ingest, write_csv, tmp_path):
    write_csv(tmp_path / "w.csv", ["id", "first"], [["1", "Zoë"]], encoding="utf-16")
    run_ingest([{"name": "w", "path": "w.csv", "id": "id", "encoding": "utf-16",
                 "columns": {"first_name": "first"}}])
    assert records(con, "first_name") == [("w", "1", "Zoë")]


def test_file_that_is_not_in_its_configured_encoding(input_error, write_csv, tmp_path):
    write_csv(tmp_path / "w.csv", ["id", "first"], [["1", "Zoe"]])
    message = input_error([{"name": "w", "path": "w.csv", "id": "id", "encoding": "utf-16",
                            "columns": {"first_name": "first"}}])
    assert message.startswith(f"{tmp_path / 'w.csv'}: not valid utf-16")
    assert "'w'" in message


# ---- bad input: one line naming the file and the row, column or value ---------------------------


def test_missing_file(input_error, contacts, tmp_path):
    (tmp_path / "partner.csv").unlink()
    assert input_error(contacts) == \
        f"{tmp_path / 'partner.csv'}: file not found (source 'partner')"


def test_mapped_column_absent_names_it_and_lists_the_columns_found(input_error, contacts, tmp_path):
    contacts[0]["columns"]["last_name"] = "Surname"
    message = input_error(contacts)
    assert message.startswith(f"{tmp_path / 'crm.csv'}: column 'Surname' (mapped by columns.last_name "
                              f"of source 'crm') not found")
    assert message.endswith("columns found: Contact ID, First Name, Last Name, Email, Company, Phone, "
                            "Country, Last Modified, Birth Date")


def test_id_column_absent(input_error, contacts):
    contacts[1]["id"] = "partner_id"
    message = input_error(contacts)
    assert "column 'partner_id' (mapped by id of source 'partner') not found" in message
    assert "columns found: id, full_name," in message


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_duplicate_ids_name_the_id_and_rows(input_error, write_csv, tmp_path, fmt):
    rows = [["1", "a@x.org"], ["2", "b@x.org"], ["1", "c@x.org"]]
    if fmt == "csv":
        write_csv(tmp_path / "a.csv", ["id", "email"], rows)
    else:
        (tmp_path / "a.jsonl").write_text("".join(json.dumps({"id": i, "email": e}) + "\n" for i, e in rows))
    message = input_error([{"name": "a", "path": f"a.{fmt}", "id": "id",
                           "columns": {"email": "email"}}])
    assert message == f"{tmp_path / f'a.{fmt}'}: id '1' in column 'id' appears 2 times (rows 1, 3)"


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_id_names_the_row_and_line(input_error, write_csv, tmp_path, empty):
    write_csv(tmp_path / "a.csv", ["id", "email"], [["1", "a@x.org"], [empty, "b@x.org"]])
    message = input_error([{"name": "a", "path": "a.csv", "id": "id",
                           "columns": {"email": "email"}}])
    assert message == f"{tmp_path / 'a.csv'}: row 2 (line 3) has an empty id in column 'id'"


def test_an_empty_id_is_reported_before_duplicates_found_earlier_in_the_file(input_error, write_csv, tmp_path):
    # Ids "1", "1", "", "2", "2": the empty id is the first thing to fix, whatever comes before it.
    write_csv(tmp_path / "a.csv", ["id", "email"],
              [["1", "a@x.org"], ["1", "b@x.org"], ["", "c@x.org"], ["2", "d@x.org"], ["2", "e@x.org"]])
    message = input_error([{"name": "a", "path": "a.csv", "id": "id", "columns": {"email": "email"}}])
    assert message == f"{tmp_path / 'a.csv'}: row 3 (line 4) has an empty id in column 'id'"


def test_the_first_duplicated_id_in_file_order_is_the_one_reported(input_error, write_csv, tmp_path):
    ids = [f"K{(n * 37) % 301}" for n in range(1, 301)]  # 300 ids, each twice, in a scrambled order
    write_csv(tmp_path / "a.csv", ["id", "email"], [[i, f"{i}@x.org"] for i in ids + ids[::-1]])
    message = input_error([{"name": "a", "path": "a.csv", "id": "id", "columns": {"email": "email"}}])
    assert message == f"{tmp_path / 'a.csv'}: id '{ids[0]}' in column 'id' appears 2 times (rows 1, 600)"


def test_empty_id_names_the_line_the_record_starts_on_after_multiline_values_and_blank_lines(input_error, tmp_path):
    # Record 1 spans lines 2-3 inside quotes and line 4 is blank: row 2 starts on line 5, not 3.
    (tmp_path / "a.csv").write_text('id,email\n1,"a\nb@x.org"\n\n,c@x.org\n', encoding="utf-8")
    message = input_error([{"name": "a", "path": "a.csv", "id": "id", "columns": {"email": "email"}}])
    assert message == f"{tmp_path / 'a.csv'}: row 2 (line 5) has an empty id in column 'id'"


def test_empty_id_line_in_a_one_column_csv_where_a_blank_line_is_a_record(input_error, tmp_path):
    (tmp_path / "a.csv").write_text("id\n1\n\n2\n", encoding="utf-8")
    message = input_error([{"name": "a", "path": "a.csv", "id": "id", "columns": {"email": "id"}}])
    assert message == f"{tmp_path / 'a.csv'}: row 2 (line 3) has an empty id in column 'id'"


def test_empty_id_line_in_json_lines_skips_blank_lines(input_error, tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "1", "e": "a"}\n\n{"id": "2", "e": "b"}\n{"id": "", "e": "c"}\n')
    message = input_error([{"name": "a", "path": "a.jsonl", "id": "id", "columns": {"email": "e"}}])
    assert message == f"{tmp_path / 'a.jsonl'}: row 3 (line 4) has an empty id in column 'id'"


def test_whole_number_ids_in_a_float_column_read_as_the_source_systems_ids(con, run_ingest, tmp_path):
    # pandas stores an integer id column that has a gap as float64: 101.0, NaN, 103.0.
    frame = PEOPLE.assign(pid=[101.0, 102.5, 103.0])
    frame.to_parquet(tmp_path / "people.parquet", index=False)
    run_ingest([PEOPLE_SOURCE | {"path": "people.parquet"}])
    assert [r[1] for r in records(con)] == ["101", "102.5", "103"]


def test_a_state_that_published_float_ids_as_text_keeps_them(con, run_ingest, tmp_path):
    # Its registry, crosswalk and golden provenance say "101.0", and downstream keys on them:
    # rewriting them would look like every record deleted and added.
    from dedupe.state import ensure_schema

    ensure_schema(con)
    con.execute("INSERT INTO record_registry VALUES ('people', '101.0', 7)")
    PEOPLE.assign(pid=[101.0, 102.5, 103.0]).to_parquet(tmp_path / "people.parquet", index=False)
    run_ingest([PEOPLE_SOURCE | {"path": "people.parquet"}])
    assert con.execute("SELECT rid, record_id FROM records ORDER BY rid").fetchall() == \
        [(7, "101.0"), (8, "102.5"), (9, "103.0")]


def test_a_missing_id_in_a_float_column_is_an_empty_id(input_error, tmp_path):
    PEOPLE.assign(pid=[101.0, float("nan"), 103.0]).to_parquet(tmp_path / "people.parquet", index=False)
    message = input_error([PEOPLE_SOURCE | {"path": "people.parquet"}])
    assert message == f"{tmp_path / 'people.parquet'}: row 2 has an empty id in column 'pid'"


@pytest.mark.parametrize("content, problem", [
    (b"", "file is empty"),
    (b"id,email\n", "file has no records"),
    (b"\n\n", "file has no records"),
])
def test_empty_file(input_error, tmp_path, content, problem):
    (tmp_path / "a.csv").write_bytes(content)
    message = input_error([{"name": "a", "path": "a.csv", "id": "id",
                           "columns": {"email": "email"}}])
    assert message == f"{tmp_path / 'a.csv'}: {problem} (source 'a')"


def test_empty_parquet_file(input_error, tmp_path):
    PEOPLE.iloc[:0].to_parquet(tmp_path / "people.parquet", index=False)
    message = input_error([PEOPLE_SOURCE | {"path": "people.parquet"}])
    assert message == f"{tmp_path / 'people.parquet'}: file has no records (source 'people')"


@pytest.mark.parametrize("bad_line, reason", [
    ("3,Cleo", "Expected Number of Columns: 3 Found: 2"),
    ("3,Cleo,c@x.org,extra", "Expected Number of Columns: 3 Found: 4"),
    ('3,"Cleo,c@x.org', "unterminated quote"),
    ('3,"Cl"eo,c@x.org', "unterminated quote"),
])
def test_malformed_csv_row_names_the_line(input_error, tmp_path, bad_line, reason):
    lines = ["id,name,email", "1,Ann,a@x.org", "2,Bob,b@x.org", bad_line, "4,Dan,d@x.org", ""]
    (tmp_path / "a.csv").write_text("\n".join(lines), encoding="utf-8")
    message = input_error([{"name": "a", "path": "a.csv", "id": "id",
                           "columns": {"full_name": "name", "email": "email"}}])
    assert message.startswith(f"{tmp_path / 'a.csv'}: malformed CSV at line 4: ")
    assert reason in message


def test_malformed_json_is_refused_with_the_file_named(input_error, tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1, "email": "a@x.org"}\n{"id": 2, "email": \n')
    message = input_error([{"name": "a", "path": "a.jsonl", "id": "id",
                           "columns": {"email": "email"}}])
    assert message.startswith(f"{tmp_path / 'a.jsonl'}: cannot read as jsonl: ")


def test_blank_first_line_is_not_taken_for_an_empty_file(input_error, tmp_path):
    (tmp_path / "a.csv").write_text("\nid,email\n1,a@x.org\n", encoding="utf-8")
    message = input_error([{"name": "a", "path": "a.csv", "id": "id", "columns": {"email": "email"}}])
    assert message == f"{tmp_path / 'a.csv'}: malformed CSV at line 1: the line is empty (expected the header row)"


def test_a_new_date_format_changes_the_content_hash_so_nothing_stale_is_reused(con, run_ingest, write_csv,
                                                                                 tmp_path):
    write_csv(tmp_path / "a.csv", ["id", "email", "seen"], [["1", "a@x.org", "03/04/2024 10:00"]])
    source = {"name": "a", "path": "a.csv", "id": "id", "columns": {"email": "email", "updated_at": "seen"}}

    def read(date_format: str):
        run_ingest([{**source, "date_format": date_format}])
        return con.execute("SELECT updated_at, content_hash FROM records").fetchall()[0]

    us, us_hash = read("%m/%d/%Y %H:%M")
    eu, eu_hash = read("%d/%m/%Y %H:%M")
    assert (us.month, eu.month) == (3, 4)
    assert us_hash != eu_hash  # the same raw text, read differently: the record must be redone
    assert read("%m/%d/%Y %H:%M")[1] == us_hash


def test_json_and_parquet_timestamps_keep_their_value(con, run_ingest, tmp_path):
    # JSON readers and Parquet files hand over real timestamps (with fractions and time zones);
    # their text form must not be counted as an unparsed date.
    rows = [{"id": 1, "email": "a@x.org", "seen": "2023-05-17T15:44:23Z"},
            {"id": 2, "email": "b@x.org", "seen": "2023-05-17T15:44:23.5+02:00"},
            {"id": 3, "email": "c@x.org", "seen": "2023-17-05"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pd.DataFrame({"id": ["9"], "email": ["d@x.org"],
                  "seen": [pd.Timestamp("2024-01-02 03:04:05.678")]}).to_parquet(tmp_path / "b.parquet")
    report = run_ingest([{"name": "a", "path": "a.jsonl", "id": "id", "columns": {"email": "email", "updated_at": "seen"}},
                         {"name": "b", "path": "b.parquet", "id": "id", "columns": {"email": "email", "updated_at": "seen"}}])
    assert records(con, "updated_at") == [
        ("a", "1", dt.datetime(2023, 5, 17, 15, 44, 23)),
        ("a", "2", dt.datetime(2023, 5, 17, 13, 44, 23, 500000)),  # in UTC
        ("a", "3", None),  # not a date: counted, never guessed
        ("b", "9", dt.datetime(2024, 1, 2, 3, 4, 5, 678000)),
    ]
    assert report.unparsed == {"a": {"updated_at": 1}}


def test_a_nested_json_field_is_refused_by_name(input_error, tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1, "email": {"work": "a@x.org"}}\n', encoding="utf-8")
    message = input_error([{"name": "a", "path": "a.jsonl", "id": "id", "columns": {"email": "email"}}])
    assert message.startswith(f"{tmp_path / 'a.jsonl'}: column 'email' (source 'a') holds nested values")


def test_ids_differing_only_by_surrounding_spaces_are_duplicates(input_error, tmp_path):
    (tmp_path / "a.csv").write_text('id,email\nC1,a@x.org\n"C1 ",b@x.org\n', encoding="utf-8")
    message = input_error([{"name": "a", "path": "a.csv", "id": "id", "columns": {"email": "email"}}])
    assert message == f"{tmp_path / 'a.csv'}: id 'C1' in column 'id' appears 2 times (rows 1, 2)"


def test_header_names_differing_only_by_case_get_distinct_columns(con, run_ingest, tmp_path):
    (tmp_path / "a.csv").write_text("id,Email,email\n1,a@x.org,b@x.org\n", encoding="utf-8")
    run_ingest([{"name": "a", "path": "a.csv", "id": "id", "columns": {"email": "email_1"}}])
    assert records(con, "email") == [("a", "1", "b@x.org")]
