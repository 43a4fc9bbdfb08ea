"""The TOML configuration: schema, validation with key paths, path resolution.

A config is the tool's public interface, so validation is strict and complete: every problem is
reported at once, each on one line that starts with its key path (``sources[1].columns.frist_name:
unknown canonical field (did you mean 'first_name'?)``). Relative paths resolve against the folder of
the config file, so a config can be run from anywhere.

Only ``[project]`` and ``[[sources]]`` are needed; ``[fields]``, ``[blocking]``, ``[model]``,
``[thresholds]``, ``[cluster]``, ``[survivorship]`` and ``[judge]`` all have defaults chosen on the
bundled fixtures and FEBRL (see the README for why each default is what it is).
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dedupe.judge import JudgeSettings, parse_judge_settings

CANONICAL_FIELDS: tuple[str, ...] = (
    "full_name", "first_name", "middle_name", "last_name", "email", "phone", "company", "title",
    "street", "city", "postcode", "region", "country", "date_of_birth", "updated_at",
)
# Fields a record carries after ingest: full_name is parsed into first/middle/last and disappears.
RECORD_FIELDS: tuple[str, ...] = tuple(f for f in CANONICAL_FIELDS if f != "full_name")
COMPARE_KINDS = ("exact", "string", "name", "date", "number")
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".json": "json"}
SURVIVORSHIP_RULES = ("most_recent", "most_complete", "source_priority", "most_frequent")
NAME_RE = re.compile(r"^[a-z0-9_]+$")
# Encodings DuckDB's CSV reader supports without an extension, by Python codec name.
CSV_ENCODINGS = ("utf-8", "utf-16", "latin-1")
_CODEC_TO_CSV = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "utf-16": "utf-16", "iso8859-1": "latin-1"}

DEFAULT_BLOCKING_RULES: tuple[tuple[str, ...], ...] = (
    ("email_key",),
    ("phone",),
    ("last_phonetic", "first_family"),
    ("first_family", "company_key"),
    ("last_phonetic", "company_key"),
    ("email_local_alnum", "first_initial"),
    ("first_family", "email_domain_key"),
)


class ConfigError(Exception):
    """Raised with every problem found; ``problems`` holds one line per problem."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    id_column: str
    columns: dict[str, tuple[str, ...]]  # field -> source columns (joined with a space)
    format: str
    delimiter: str | None = None
    encoding: str | None = None
    date_format: str | None = None
    header: bool = True


@dataclass(frozen=True)
class ExtraField:
    name: str
    compare: str
    identifier: bool = False  # two different non-null values mean two different people


@dataclass(frozen=True)
class ModelSettings:
    seed: int = 42
    u_sample_pairs: int = 300_000
    em_max_iterations: int = 40
    em_tolerance: float = 1e-5
    tf_adjustment: bool = True
    m_from_anchors: bool = True  # m from pairs agreeing on 3 other identity fields; False = pure EM
    prior: float | None = None  # fixed share of matches among all record pairs; None = EM


@dataclass(frozen=True)
class Thresholds:
    # Chosen on the generator's fixtures, 2 x 50k (seed 11) and 2 x 100k (seed 3), for the best F1
    # a correct judge could reach within ~5 review pairs per 100 records (README, "Zones"). The
    # model's probabilities are not calibrated at either end: pairs at p 0.2-0.5 are ~17-30% true
    # matches (worth a judge's look), pairs at p 0.99-0.995 ~5% false (also worth a look, now that
    # the budget is not spent on pairs whose verdict cannot change a cluster).
    match: float = 0.995  # at or above: link, decided
    review: float = 0.1  # at or above (and below match): ambiguous, sent to the judge
    fallback: float = 0.95  # without a verdict, review pairs at or above this are linked (weakly)
    require_name_agreement: bool = True  # first AND last name both different: never a model link
    # At most this many review pairs per 100 input records (the judge's bill scales with it): when
    # the band holds more, the likeliest pairs stay and the rest are decided by the model.
    review_budget: float | None = 5.0


@dataclass(frozen=True)
class ClusterSettings:
    max_size: int = 20
    identifiers: tuple[str, ...] = ("date_of_birth",)


@dataclass(frozen=True)
class Survivorship:
    rules: tuple[str, ...] = ("most_recent", "most_complete", "source_priority")
    source_priority: tuple[str, ...] = ()
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class BlockingSettings:
    rules: tuple[tuple[str, ...], ...] = DEFAULT_BLOCKING_RULES
    # 30: on 1.6M records, name blocks (namesakes) of 30-100 records made 24M of 31M candidate
    # pairs; on 2 x 50k no true pair was lost below 50 and 0.02% at 25.
    max_block_size: int = 30


# Nightly churn is a few percent at most; a larger loss is far more often a broken export than a purge.
DEFAULT_MAX_DELETED_SHARE = 0.1


@dataclass(frozen=True)
class Config:
    path: Path
    name: str
    output_dir: Path
    state: Path
    sources: tuple[Source, ...]
    extra_fields: tuple[ExtraField, ...] = ()
    blocking: BlockingSettings = BlockingSettings()
    model: ModelSettings = ModelSettings()
    thresholds: Thresholds = Thresholds()
    cluster: ClusterSettings = ClusterSettings()
    survivorship: Survivorship = Survivorship()
    judge: JudgeSettings = JudgeSettings()
    memory_limit: str | None = None
    temp_directory: Path | None = None
    threads: int | None = None
    # A source missing more than this share of the records the last run published is refused
    # (see ingest): a truncated export must not retire golden ids that downstream keys on.
    max_deleted_share: float = DEFAULT_MAX_DELETED_SHARE

    @property
    def record_fields(self) -> tuple[str, ...]:
        """Fields of the ingested record table, canonical first, then declared extras."""
        return RECORD_FIELDS + tuple(f.name for f in self.extra_fields)

    @property
    def mapped_fields(self) -> set[str]:
        """Record fields that at least one source maps (full_name counts as first/middle/last)."""
        out: set[str] = set()
        for s in self.sources:
            for f in s.columns:
                out |= {"first_name", "middle_name", "last_name"} if f == "full_name" else {f}
        return out

    def fingerprint(self) -> str:
        """A hash of the config file's content, recorded with each run."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# validation helpers


class _Checker:
    """Collects problems with key paths instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        # Key paths a misspelt key was matched to: "required" is not reported again for them, so
        # one typo gives one line.
        self.suggested: set[str] = set()

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def unknown_keys(self, table: dict, known: tuple[str, ...] | set[str], prefix: str) -> None:
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, list(known), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                if hint and hint[0] not in table:
                    self.suggested.add(_join(prefix, hint[0]))
                self.add(_join(prefix, key), f"unknown key{suggestion}")

    def typed(self, table: dict, key: str, kind: type | tuple[type, ...], prefix: str,
              default: Any = None, required: bool = False) -> Any:
        if key not in table:
            if required and _join(prefix, key) not in self.suggested:
                self.add(_join(prefix, key), "required")
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML integers are acceptable wherever a float is expected; booleans are never numbers.
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, bool) and bool not in kinds:
            self.add(_join(prefix, key), f"expected {_kind_name(kinds)}, got a boolean")
            return default
        if not isinstance(value, kinds):
            self.add(_join(prefix, key), f"expected {_kind_name(kinds)}, got {type(value).__name__}")
            return default
        return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _csv_encoding(value: str) -> str | None:
    """The reader's name for an encoding ('latin1', 'ISO-8859-1' -> 'latin-1'), None if unsupported."""
    try:
        name = codecs.lookup(value).name
    except LookupError:
        return None
    return _CODEC_TO_CSV.get(name)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


# --------------------------------------------------------------------------------------------
# sections


def _parse_source(c: _Checker, raw: Any, i: int, base: Path, known_fields: set[str]) -> Source | None:
    prefix = f"sources[{i}]"
    if not isinstance(raw, dict):
        c.add(prefix, "expected a table ([[sources]])")
        return None
    c.unknown_keys(raw, ("name", "path", "id", "columns", "format", "delimiter", "encoding",
                         "date_format", "header"), prefix)
    name = c.typed(raw, "name", str, prefix, required=True)
    if name is not None and not NAME_RE.match(name):
        c.add(f"{prefix}.name", f"'{name}' must match [a-z0-9_]+")
    path_s = c.typed(raw, "path", str, prefix, required=True)
    id_col = c.typed(raw, "id", str, prefix, required=True)
    if id_col is not None and not id_col.strip():
        c.add(f"{prefix}.id", "must not be empty")
    path = _resolve(base, path_s) if path_s else None
    fmt = c.typed(raw, "format", str, prefix)
    if fmt is None and path is not None:
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            c.add(f"{prefix}.path", f"unsupported file type '{path.suffix}' (use one of "
                  f"{', '.join(sorted(FORMATS))}, or set format)")
    elif fmt is not None and fmt not in set(FORMATS.values()):
        c.add(f"{prefix}.format", f"'{fmt}' is not one of csv, parquet, jsonl, json")
    delimiter = c.typed(raw, "delimiter", str, prefix)
    if delimiter is not None and len(delimiter) != 1:
        c.add(f"{prefix}.delimiter", f"{delimiter!r} must be a single character")
        delimiter = None
    if delimiter is None and path is not None and path.suffix.lower() == ".tsv":
        delimiter = "\t"
    encoding = c.typed(raw, "encoding", str, prefix)
    if encoding is not None:
        normalised = _csv_encoding(encoding)
        if normalised is None:
            c.add(f"{prefix}.encoding", f"'{encoding}' is not supported (use one of "
                  f"{', '.join(CSV_ENCODINGS)})")
        encoding = normalised
    date_format = c.typed(raw, "date_format", str, prefix)
    header = c.typed(raw, "header", bool, prefix, default=True)

    columns: dict[str, tuple[str, ...]] = {}
    raw_cols = c.typed(raw, "columns", dict, prefix, required=True) or {}
    for fname, col in raw_cols.items():
        key = f"{prefix}.columns.{fname}"
        if fname not in known_fields:
            # Only a near spelling is offered as a typo (0.6 would turn 'loyalty_number' into
            # 'last_name'); anything else is most likely a field the user wants to add.
            hint = difflib.get_close_matches(fname, sorted(known_fields), n=1, cutoff=0.8)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else \
                " (declare extra fields under [fields.NAME])"
            c.add(key, f"unknown canonical field '{fname}'{suggestion}")
            continue
        if isinstance(col, str) and col:
            columns[fname] = (col,)
        elif isinstance(col, list) and col and all(isinstance(x, str) and x for x in col):
            columns[fname] = tuple(col)
        else:
            c.add(key, "expected a column name or a list of column names")
    if "full_name" in columns and {"first_name", "last_name"} & set(columns):
        c.add(f"{prefix}.columns", "map either full_name or first_name/last_name, not both")
    if not columns and not c.problems:
        c.add(f"{prefix}.columns", "maps no fields")
    if name is None or path is None or id_col is None or fmt is None:
        return None
    return Source(name=name, path=path, id_column=id_col, columns=columns, format=fmt,
                  delimiter=delimiter, encoding=encoding, date_format=date_format, header=header)


def _parse_extra_fields(c: _Checker, raw: Any) -> tuple[ExtraField, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        c.add("fields", "expected a table of [fields.NAME] tables")
        return ()
    out = []
    for name, spec in raw.items():
        prefix = f"fields.{name}"
        if not NAME_RE.match(name):
            c.add(prefix, "field names must match [a-z0-9_]+")
            continue
        if name in CANONICAL_FIELDS:
            c.add(prefix, "is a canonical field already; map it directly in [sources.columns]")
            continue
        if not isinstance(spec, dict):
            c.add(prefix, "expected a table with compare = ...")
            continue
        c.unknown_keys(spec, ("compare", "identifier"), prefix)
        compare = c.typed(spec, "compare", str, prefix, required=True)
        if compare is not None and compare not in COMPARE_KINDS:
            c.add(f"{prefix}.compare", f"'{compare}' is not one of {', '.join(COMPARE_KINDS)}")
            continue
        identifier = c.typed(spec, "identifier", bool, prefix, default=False)
        if compare is not None:
            out.append(ExtraField(name=name, compare=compare, identifier=identifier))
    return tuple(out)


def _parse_probability(c: _Checker, table: dict, key: str, prefix: str, default: float) -> float:
    value = c.typed(table, key, float, prefix, default=default)
    if not 0.0 <= value <= 1.0:
        c.add(_join(prefix, key), f"{value} is not a probability between 0 and 1")
        return default
    return value


def _parse_budget(c: _Checker, raw: dict, default: float | None) -> float | None:
    """``review_budget``: review pairs per 100 records, a number >= 0, or false for no cap."""
    value = raw.get("review_budget", default)
    if value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        c.add("thresholds.review_budget", f"must be a number >= 0 (review pairs per 100 records) or false, "
                                          f"got {value!r}")
        return default
    return float(value)


def _parse_thresholds(c: _Checker, raw: dict) -> Thresholds:
    c.unknown_keys(raw, ("match", "review", "fallback", "require_name_agreement", "review_budget"), "thresholds")
    d = Thresholds()
    t = Thresholds(match=_parse_probability(c, raw, "match", "thresholds", d.match),
                   review=_parse_probability(c, raw, "review", "thresholds", d.review),
                   fallback=_parse_probability(c, raw, "fallback", "thresholds", d.fallback),
                   require_name_agreement=c.typed(raw, "require_name_agreement", bool, "thresholds",
                                                  default=d.require_name_agreement),
                   review_budget=_parse_budget(c, raw, d.review_budget))
    if not t.review <= t.fallback <= t.match:
        c.add("thresholds", f"need review <= fallback <= match (got {t.review}, {t.fallback}, {t.match})")
    return t


def _parse_model(c: _Checker, raw: dict) -> ModelSettings:
    c.unknown_keys(raw, ("seed", "u_sample_pairs", "em_max_iterations", "em_tolerance",
                         "tf_adjustment", "m_from_anchors", "prior"), "model")
    d = ModelSettings()
    prior = raw.get("prior")
    if prior is not None:
        prior = _parse_probability(c, raw, "prior", "model", 0.01)
    m = ModelSettings(
        seed=c.typed(raw, "seed", int, "model", default=d.seed),
        u_sample_pairs=c.typed(raw, "u_sample_pairs", int, "model", default=d.u_sample_pairs),
        em_max_iterations=c.typed(raw, "em_max_iterations", int, "model", default=d.em_max_iterations),
        em_tolerance=c.typed(raw, "em_tolerance", float, "model", default=d.em_tolerance),
        tf_adjustment=c.typed(raw, "tf_adjustment", bool, "model", default=d.tf_adjustment),
        m_from_anchors=c.typed(raw, "m_from_anchors", bool, "model", default=d.m_from_anchors),
        prior=prior,
    )
    if m.u_sample_pairs < 1000:
        c.add("model.u_sample_pairs", "must be at least 1000")
    return m


def _parse_blocking(c: _Checker, raw: dict) -> BlockingSettings:
    from dedupe.blocking import BLOCKING_KEYS  # the keys blocking knows how to build

    c.unknown_keys(raw, ("rules", "max_block_size"), "blocking")
    d = BlockingSettings()
    size = c.typed(raw, "max_block_size", int, "blocking", default=d.max_block_size)
    if size < 2:
        c.add("blocking.max_block_size", "must be at least 2")
    rules_raw = c.typed(raw, "rules", list, "blocking", default=None)
    if rules_raw is None:
        return BlockingSettings(max_block_size=size)
    rules = []
    for i, rule in enumerate(rules_raw):
        parts = [rule] if isinstance(rule, str) else rule
        if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
            c.add(f"blocking.rules[{i}]", "expected a key name or a list of key names")
            continue
        for p in parts:
            if p not in BLOCKING_KEYS and not p.startswith("field:"):
                hint = difflib.get_close_matches(p, list(BLOCKING_KEYS), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                c.add(f"blocking.rules[{i}]", f"unknown blocking key '{p}'{suggestion}; known: "
                      f"{', '.join(BLOCKING_KEYS)}, or field:NAME for an exact field value")
        rules.append(tuple(parts))
    if not rules_raw:
        c.add("blocking.rules", "needs at least one rule")
    return BlockingSettings(rules=tuple(rules), max_block_size=size)


def _parse_cluster(c: _Checker, raw: dict, known_fields: set[str]) -> ClusterSettings:
    c.unknown_keys(raw, ("max_size", "identifiers"), "cluster")
    d = ClusterSettings()
    size = c.typed(raw, "max_size", int, "cluster", default=d.max_size)
    if size < 2:
        c.add("cluster.max_size", "must be at least 2")
    ids = c.typed(raw, "identifiers", list, "cluster", default=list(d.identifiers))
    for f in ids:
        if not isinstance(f, str):
            c.add("cluster.identifiers", f"expected field names, got {f!r}")
        elif f not in known_fields:
            c.add("cluster.identifiers", f"unknown field '{f}'")
    return ClusterSettings(max_size=size, identifiers=tuple(ids))


def _parse_survivorship(c: _Checker, raw: dict, source_names: list[str],
                        known_fields: set[str]) -> Survivorship:
    c.unknown_keys(raw, ("rules", "source_priority", "fields"), "survivorship")
    d = Survivorship()

    def rule_list(value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
            c.add(key, "expected a list of rule names")
            return d.rules
        for r in value:
            if r not in SURVIVORSHIP_RULES:
                c.add(key, f"unknown rule '{r}' (use {', '.join(SURVIVORSHIP_RULES)})")
        return tuple(value)

    rules = rule_list(raw["rules"], "survivorship.rules") if "rules" in raw else d.rules
    priority = c.typed(raw, "source_priority", list, "survivorship", default=list(source_names))
    for s in priority:
        if s not in source_names:
            c.add("survivorship.source_priority", f"unknown source '{s}'")
    fields: dict[str, tuple[str, ...]] = {}
    for fname, value in (c.typed(raw, "fields", dict, "survivorship", default={}) or {}).items():
        if fname not in known_fields:
            c.add(f"survivorship.fields.{fname}", "unknown field")
            continue
        fields[fname] = rule_list(value, f"survivorship.fields.{fname}")
    # Sources not listed keep their config order after the listed ones.
    priority = list(priority) + [s for s in source_names if s not in priority]
    return Survivorship(rules=rules, source_priority=tuple(priority), fields=fields)


# --------------------------------------------------------------------------------------------


def load_config(path: str | Path, output_dir: str | Path | None = None) -> Config:
    """Read and validate a config; raise ConfigError listing every problem."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(path, ["config file not found"])
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(path, [f"not valid TOML: {e}"]) from None
    base = path.parent
    c = _Checker()
    c.unknown_keys(raw, ("project", "sources", "fields", "blocking", "model", "thresholds",
                         "cluster", "survivorship", "judge", "engine"), "")

    project = c.typed(raw, "project", dict, "", default={}, required=True) or {}
    c.unknown_keys(project, ("name", "output_dir", "state", "max_deleted_share"), "project")
    name = c.typed(project, "name", str, "project", default=path.stem)
    out_s = c.typed(project, "output_dir", str, "project", default=f"out/{path.stem}")
    state_s = c.typed(project, "state", str, "project", default=None)
    out = Path(output_dir).resolve() if output_dir else _resolve(base, out_s)
    state = _resolve(base, state_s) if state_s else out / "state.duckdb"

    extras = _parse_extra_fields(c, raw.get("fields"))
    known_fields = set(CANONICAL_FIELDS) | {f.name for f in extras}
    record_fields = (set(RECORD_FIELDS) | {f.name for f in extras})

    sources_raw = c.typed(raw, "sources", list, "", default=[], required=True) or []
    if "sources" in raw and not sources_raw:
        c.add("sources", "needs at least one [[sources]] table")
    parsed = [_parse_source(c, raw_source, i, base, known_fields) for i, raw_source in enumerate(sources_raw)]
    sources = [s for s in parsed if s is not None]
    names = [s.name for s in sources]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        c.add("sources", f"source name '{dup}' is used more than once")

    def section(key: str) -> dict:
        return c.typed(raw, key, dict, "", default={}) or {}

    engine = section("engine")
    c.unknown_keys(engine, ("memory_limit", "temp_directory", "threads"), "engine")
    temp_dir = c.typed(engine, "temp_directory", str, "engine")
    judge, judge_problems = parse_judge_settings(section("judge"))
    c.problems.extend(judge_problems)

    config = Config(
        path=path, name=name, output_dir=out, state=state, sources=tuple(sources),
        extra_fields=extras,
        blocking=_parse_blocking(c, section("blocking")),
        model=_parse_model(c, section("model")),
        thresholds=_parse_thresholds(c, section("thresholds")),
        cluster=_parse_cluster(c, section("cluster"), record_fields),
        survivorship=_parse_survivorship(c, section("survivorship"), names, record_fields),
        judge=judge,
        memory_limit=c.typed(engine, "memory_limit", str, "engine"),
        temp_directory=_resolve(base, temp_dir) if temp_dir else None,
        threads=c.typed(engine, "threads", int, "engine"),
        max_deleted_share=_parse_probability(c, project, "max_deleted_share", "project",
                                             DEFAULT_MAX_DELETED_SHARE),
    )
    if c.problems:
        raise ConfigError(path, c.problems)
    return config
