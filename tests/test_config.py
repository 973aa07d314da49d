"""Settings: defaults, then a TOML file, then COHUB_* variables, then flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cohub import config


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    s = config.load(parse(), environ={})
    assert (s.host, s.port, s.data_dir, s.base_path) == ("127.0.0.1", 5000, Path("data"), "/")
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("data/cohub.sqlite3")
    assert s.conat_path == "/conat"
    assert s.router_url == "http://127.0.0.1:5000"


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "cohub.toml"
    cfg.write_text('port = 6000\nhost = "0.0.0.0"\nbase-path = "/from-file"\n')
    env = {"COHUB_CONFIG": str(cfg), "COHUB_PORT": "7000"}
    s = config.load(parse(), environ=env)
    assert (s.port, s.host, s.base_path) == (7000, "0.0.0.0", "/from-file")
    assert s.router_url == "http://127.0.0.1:7000"
    s = config.load(parse("--port", "8000"), environ=env)
    assert s.port == 8000


def test_base_path_normalization() -> None:
    for raw, prefix in [
        ("/", "/"),
        ("", "/"),
        ("hub", "/hub/"),
        ("/hub/", "/hub/"),
        ("/a/b", "/a/b/"),
    ]:
        s = config.Settings(base_path=raw)
        assert s.prefix == prefix
        assert s.conat_path == prefix + "conat"


def test_db_url_override() -> None:
    s = config.load(parse("--db-url", "postgresql://u@h/db"), environ={})
    assert s.database_url == "postgresql://u@h/db"


def test_bad_values_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--port"):
        config.load(parse(), environ={"COHUB_PORT": "many"})
    cfg = tmp_path / "c.toml"
    cfg.write_text("colour = 1\n")
    with pytest.raises(SystemExit, match="unknown setting 'colour'"):
        config.load(parse("--config", str(cfg)), environ={})


def test_every_setting_has_help() -> None:
    import dataclasses

    for f in dataclasses.fields(config.Settings):
        assert f.metadata.get("help"), f.name


@pytest.mark.parametrize("port", ["0", "-1", "65536", "99999"])
@pytest.mark.parametrize("option", ["port", "smtp-port"])
def test_ports_out_of_range_are_refused(option: str, port: str) -> None:
    with pytest.raises(SystemExit, match=f"--{option}.*1-65535"):
        config.load(parse(f"--{option}", port), environ={})
    env = {"COHUB_" + option.replace("-", "_").upper(): port}
    with pytest.raises(SystemExit, match=f"--{option}"):
        config.load(parse(), environ=env)


def test_ports_in_range_are_accepted() -> None:
    assert config.load(parse("--port", "1"), environ={}).port == 1
    assert config.load(parse("--port", "65535"), environ={}).port == 65535


@pytest.mark.parametrize(
    "base",
    [
        "/a/../b",
        "..",
        "/./",
        "/a b/",
        " /hub",
        "/hub?x=1",
        "/hub#top",
        "/h%2Fub",
        "/hub\x01",
        "/hub\n",
        "/a//b",
        "/hüb",
    ],
)
def test_bad_base_paths_are_refused(base: str) -> None:
    with pytest.raises(SystemExit, match=r"--base-path.*segments"):
        config.load(parse("--base-path", base), environ={})


@pytest.mark.parametrize("base", ["/", "", "hub", "/hub/", "/a/b", "/a.b/c_d~e-f/", "/v1.2"])
def test_good_base_paths_are_accepted(base: str) -> None:
    assert config.load(parse("--base-path", base), environ={}).base_path == base


def test_help_shows_plain_defaults() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    text = parser.format_help()
    assert "PosixPath" not in text and "None" not in text
    assert "default data]" in " ".join(text.split())
    assert "default 5000]" in text and "default 127.0.0.1]" in text


def test_log_levels() -> None:
    for level in ("debug", "INFO", "warning", "error"):
        assert config.load(parse("--log-level", level), environ={}).log_level == level
    with pytest.raises(SystemExit, match=r"--log-level.*'loud'.*debug, info, warning, error"):
        config.load(parse("--log-level", "loud"), environ={})
    with pytest.raises(SystemExit, match="--log-level"):
        config.load(parse(), environ={"COHUB_LOG_LEVEL": "verbose"})
