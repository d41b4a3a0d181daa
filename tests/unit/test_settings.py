"""config.Settings: laptop defaults, KUBEPREDICT_* parsing, secrets from files, overrides, clear errors."""

import dataclasses
import os
from pathlib import Path

import pytest

from kubepredict.config import Settings, env_name
from kubepredict.errors import ConfigError


def test_no_environment_gives_the_laptop_defaults():
    s = Settings.from_env({})
    assert s == Settings()
    assert s.data_dir == Path("./data") and s.runner == "local" and s.port == 8080 and s.host == "127.0.0.1"
    assert s.database_url == f"sqlite:///{(Path('data') / 'kubepredict.db').resolve()}"
    assert s.storage_url == (Path("data") / "objects").resolve().as_uri()
    assert s.api_token is None and s.allowed_hosts == () and s.web_dir is None
    assert s.max_concurrent_jobs == (os.cpu_count() or 2)


def test_derived_urls_follow_the_data_dir(tmp_path):
    s = Settings.from_env({"KUBEPREDICT_DATA_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'kubepredict.db'}"
    assert s.storage_url == (tmp_path / "objects").as_uri()


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_every_field_is_read_from_its_variable():
    s = Settings.from_env(
        {
            "KUBEPREDICT_PORT": "9000",
            "KUBEPREDICT_HEADER_TIMEOUT_SECONDS": "2.5",
            "KUBEPREDICT_RUNNER": "kubernetes",
            "KUBEPREDICT_ALLOWED_HOSTS": " a.example , ,b.example",
            "KUBEPREDICT_WEB_DIR": "/srv/web",
            "KUBEPREDICT_DEFAULT_MODEL": "  iris ",
            "KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
            "KUBEPREDICT_TOPIC_EVENTS": "ev",
            "KUBEPREDICT_DATABASE_URL": "postgresql://db/x",
        }
    )
    assert (s.port, s.header_timeout_seconds, s.runner) == (9000, 2.5, "kubernetes")
    assert s.allowed_hosts == ("a.example", "b.example") and s.web_dir == Path("/srv/web")
    assert (s.default_model, s.kafka_bootstrap_servers, s.topic_events) == ("iris", "k:9092", "ev")
    assert s.database_url == "postgresql://db/x"
    # unset and empty both mean the default
    assert Settings.from_env({"KUBEPREDICT_PORT": "", "KUBEPREDICT_NAMESPACE": ""}) == Settings()


def test_switches_read_the_usual_spellings():
    assert Settings().gc_on_start is True
    for raw, value in (
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
    ):
        assert Settings.from_env({"KUBEPREDICT_GC_ON_START": raw}).gc_on_start is value, raw


def test_each_field_has_a_kubepredict_variable():
    names = {env_name(f.name) for f in dataclasses.fields(Settings)}
    assert {"KUBEPREDICT_DATA_DIR", "KUBEPREDICT_S3_SECRET_ACCESS_KEY", "KUBEPREDICT_JOB_CPU_LIMIT"} <= names
    for f in dataclasses.fields(Settings):  # a sample value of the right type round-trips through the variable
        sample = {"int": "3", "float": "3.5", "bool": "off"}.get(str(f.type), "x")
        if f.name in ("runner", "job_memory_limit", "job_max_memory", "job_cpu_limit", "read_token"):
            continue  # checked values: covered below
        assert getattr(Settings.from_env({env_name(f.name): sample}), f.name) not in (None, "", ())


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("KUBEPREDICT_PORT", "eighty", "KUBEPREDICT_PORT must be an integer, got 'eighty'"),
        ("KUBEPREDICT_MAX_CONNECTIONS", "1.5", "KUBEPREDICT_MAX_CONNECTIONS must be an integer"),
        ("KUBEPREDICT_BODY_TIMEOUT_SECONDS", "soon", "KUBEPREDICT_BODY_TIMEOUT_SECONDS must be a number"),
        ("KUBEPREDICT_RUNNER", "docker", "KUBEPREDICT_RUNNER must be 'local' or 'kubernetes'"),
        ("KUBEPREDICT_JOB_MEMORY_LIMIT", "lots", "KUBEPREDICT_JOB_MEMORY_LIMIT must be a positive Kubernetes quantity"),
        ("KUBEPREDICT_JOB_CPU_LIMIT", "0", "KUBEPREDICT_JOB_CPU_LIMIT must be a positive"),
        ("KUBEPREDICT_JOB_DEADLINE_SECONDS", "-1", "KUBEPREDICT_JOB_DEADLINE_SECONDS must be positive"),
        ("KUBEPREDICT_READ_TOKEN", "r", "KUBEPREDICT_READ_TOKEN needs KUBEPREDICT_API_TOKEN"),
        (
            "KUBEPREDICT_ASYNC_WORKERS",
            "0",
            "KUBEPREDICT_ASYNC_QUEUE_MAX and KUBEPREDICT_ASYNC_WORKERS must be at least",
        ),
        ("KUBEPREDICT_GC_ON_START", "maybe", "KUBEPREDICT_GC_ON_START must be true or false, got 'maybe'"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value})
    assert message in str(err.value)


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="KUBEPREDICT_RUNNER"):
        Settings(runner="docker")


def test_a_secret_file_wins_over_the_environment(tmp_path):
    (tmp_path / "kubepredict-api-token").write_text("from-file\n")
    (tmp_path / "KUBEPREDICT_S3_SECRET_ACCESS_KEY").write_text("s3-from-file")
    env = {
        "KUBEPREDICT_SECRETS_DIR": str(tmp_path),
        "KUBEPREDICT_API_TOKEN": "from-env",
        "KUBEPREDICT_READ_TOKEN": "reader",
        "KUBEPREDICT_S3_ACCESS_KEY_ID": "id-from-env",
    }
    s = Settings.from_env(env)
    assert (s.api_token, s.read_token) == ("from-file", "reader")
    assert (s.s3_access_key_id, s.s3_secret_access_key) == ("id-from-env", "s3-from-file")


def test_only_secret_fields_are_read_from_files(tmp_path):
    (tmp_path / "kubepredict_port").write_text("1234")
    s = Settings.from_env({"KUBEPREDICT_SECRETS_DIR": str(tmp_path)})
    assert s.port == 8080


def test_keyword_overrides_win_and_none_means_not_given(tmp_path):
    env = {"KUBEPREDICT_PORT": "9000", "KUBEPREDICT_HOST": "0.0.0.0", "KUBEPREDICT_DATA_DIR": str(tmp_path)}
    s = Settings.from_env(env, port=7000, host=None, runner="local")
    assert (s.port, s.host, s.data_dir) == (7000, "0.0.0.0", tmp_path)
    with pytest.raises(ConfigError, match="KUBEPREDICT_RUNNER"):
        Settings.from_env({}, runner="docker")
