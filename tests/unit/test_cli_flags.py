"""Go-style flag parsing and backend selection (pure functions of :mod:`eventodb.config`)."""

from __future__ import annotations

import pytest

from eventodb.config import (
    DEFAULT_DATA_DIR,
    SERVE_FLAGS,
    Backend,
    FlagError,
    HelpRequested,
    Settings,
    UnsupportedScheme,
    load_settings,
    parse_bool,
    parse_flags,
    resolve_backend,
)


@pytest.mark.parametrize(
    "args",
    [
        ["-port", "9000", "-db-url", "sqlite://x.db"],
        ["-port=9000", "-db-url=sqlite://x.db"],
        ["--port", "9000", "--db-url", "sqlite://x.db"],
        ["--port=9000", "--db-url=sqlite://x.db"],
    ],
)
def test_four_syntaxes_for_valued_flags(args: list[str]) -> None:
    settings = load_settings(args, {})
    assert (settings.port, settings.db_url) == (9000, "sqlite://x.db")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-test-mode"], True),
        (["--test-mode"], True),
        (["-test-mode=true"], True),
        (["--test-mode=1"], True),
        (["-test-mode=false"], False),
        (["--test-mode=F"], False),
        ([], False),
    ],
)
def test_boolean_flags(args: list[str], expected: bool) -> None:
    assert load_settings(args, {}).test_mode is expected


def test_boolean_flag_does_not_consume_the_next_argument() -> None:
    values, rest = parse_flags(["-test-mode", "false"], SERVE_FLAGS, {})
    assert values["test-mode"] is True
    assert rest == ["false"]


def test_parsing_stops_at_first_positional_or_double_dash() -> None:
    assert parse_flags(["-port", "1", "extra", "-token", "x"], SERVE_FLAGS, {})[1] == [
        "extra",
        "-token",
        "x",
    ]
    assert parse_flags(["--", "-port"], SERVE_FLAGS, {})[1] == ["-port"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-nope"], "flag provided but not defined: -nope"),
        (["-port"], "flag needs an argument: -port"),
        (["-port", "x"], 'invalid integer value "x" for flag -port'),
        (["-test-mode=yes"], 'invalid boolean value "yes" for flag -test-mode'),
        (["---port=1"], "bad flag syntax: ---port=1"),
        (["-port", "70000"], 'invalid value "70000" for flag -port: out of range'),
        (["-sqlite-sync", "off"], 'invalid value "off" for flag -sqlite-sync: use normal or full'),
    ],
)
def test_flag_errors_use_go_messages(args: list[str], message: str) -> None:
    with pytest.raises(FlagError, match=message):
        load_settings(args, {})


@pytest.mark.parametrize("flag", ["-h", "--help", "-help"])
def test_help_flag(flag: str) -> None:
    with pytest.raises(HelpRequested):
        load_settings(["-port", "1", flag], {})


def test_environment_supplies_defaults_and_flags_win() -> None:
    env = {
        "EVENTODB_PORT": "7000",
        "EVENTODB_TEST_MODE": "TRUE",
        "EVENTODB_TOKEN": "tok",
        "EVENTODB_LOG_LEVEL": "DEBUG",
        "EVENTODB_DATA_DIR": "",
    }
    settings = load_settings([], env)
    assert (settings.port, settings.test_mode, settings.token, settings.log_level) == (
        7000,
        True,
        "tok",
        "debug",
    )
    assert settings.data_dir is None
    assert load_settings(["-port=1", "-test-mode=false"], env).port == 1
    assert load_settings(["-test-mode=false"], env).test_mode is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EVENTODB_PORT": "abc"}, 'invalid integer value "abc" in EVENTODB_PORT'),
        ({"EVENTODB_TEST_MODE": "yes"}, 'invalid boolean value "yes" in EVENTODB_TEST_MODE'),
        ({"EVENTODB_SSE_HEARTBEAT": "often"}, 'invalid float value "often" in EVENTODB_SSE'),
        (
            {"EVENTODB_LOG_LEVEL": "verbose"},
            'invalid value "verbose" in EVENTODB_LOG_LEVEL: use debug, info, warn, warning or '
            "error",
        ),
        (
            {"EVENTODB_LOG_FORMAT": "yaml"},
            'invalid value "yaml" in EVENTODB_LOG_FORMAT: use console or json',
        ),
    ],
)
def test_unparsable_environment_values_are_refused_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(FlagError, match=message):
        load_settings([], env)


def test_a_flag_overrides_an_unparsable_environment_value() -> None:
    settings = load_settings(["-port", "9000"], {"EVENTODB_PORT": "abc"})
    assert settings.port == 9000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-log-level", "verbose"],
            'invalid value "verbose" for flag -log-level: use debug, info, warn, warning or error',
        ),
        (["--log-format=yaml"], 'invalid value "yaml" for flag -log-format: use console or json'),
        (["-metrics-namespaces", "-1"], "-metrics-namespaces: must not be negative"),
    ],
)
def test_values_outside_a_flags_choices_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(FlagError, match=message):
        load_settings(args, {})


def test_choices_match_case_insensitively_and_are_stored_lower_case() -> None:
    settings = load_settings(["-log-level", "WARN", "-log-format", "JSON"], {})
    assert (settings.log_level, settings.log_format) == ("warn", "json")


def test_metrics_flags() -> None:
    assert (Settings().metrics, Settings().metrics_public, Settings().metrics_namespaces) == (
        True,
        False,
        100,
    )
    settings = load_settings(["-no-metrics", "--metrics-public", "-metrics-namespaces=5"], {})
    assert (settings.metrics, settings.metrics_public, settings.metrics_namespaces) == (
        False,
        True,
        5,
    )


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize(
    ("settings", "backend"),
    [
        (Settings(), Backend("sqlite", data_dir=DEFAULT_DATA_DIR, embedded_default=True)),
        (Settings(data_dir="/d"), Backend("sqlite", data_dir="/d", embedded_default=True)),
        (Settings(test_mode=True), Backend("memory")),
        (Settings(test_mode=True, data_dir="/d"), Backend("memory")),
        (Settings(db_url="sqlite://:memory:", data_dir="/d"), Backend("memory")),
        (
            Settings(db_url="sqlite://reg.db", data_dir="/d"),
            Backend("sqlite", data_dir="/d", registry_file="reg.db"),
        ),
        (
            Settings(db_url="sqlite://", data_dir="/d", test_mode=True),
            Backend("sqlite", data_dir="/d", registry_file="metadata.db"),
        ),
        (Settings(db_url="postgres://u@h/db"), Backend("postgres", dsn="postgres://u@h/db")),
        (Settings(db_url="postgresql://h/db"), Backend("postgres", dsn="postgresql://h/db")),
    ],
)
def test_backend_selection(settings: Settings, backend: Backend) -> None:
    assert resolve_backend(settings) == backend


@pytest.mark.parametrize("url", ["mysql://h/db", "pebble:///tmp/x", "nonsense"])
def test_unknown_scheme_is_refused(url: str) -> None:
    with pytest.raises(UnsupportedScheme, match="unsupported database scheme"):
        resolve_backend(Settings(db_url=url))


def test_protection_flags_have_documented_defaults() -> None:
    s = load_settings([], {})
    assert (s.max_header_bytes, s.header_timeout, s.body_timeout, s.idle_timeout) == (
        65536,
        10.0,
        30.0,
        120.0,
    )
    assert (s.max_connections, s.max_in_flight, s.auth_cache_ttl, s.file_mode) == (
        4096,
        256,
        5.0,
        0o600,
    )


def test_protection_flags_from_flags_and_environment() -> None:
    s = load_settings(
        ["-max-connections=10", "--file-mode", "0640"], {"EVENTODB_HEADER_TIMEOUT": "2.5"}
    )
    assert (s.max_connections, s.file_mode, s.header_timeout) == (10, 0o640, 2.5)


@pytest.mark.parametrize(
    "args",
    [
        ["-max-connections=0"],
        ["-max-in-flight=-1"],
        ["-header-timeout=0"],
        ["-auth-cache-ttl=-1"],
        ["-file-mode=0200"],  # the owner could not read its own database
        ["-file-mode=rw"],
        ["-file-mode=01777"],
    ],
)
def test_protection_flags_refuse_unusable_values(args: list[str]) -> None:
    with pytest.raises(FlagError):
        load_settings(args, {})
