from pathlib import Path

import pytest

from telemetry.settings import Settings, SettingsError, load_settings, override


def test_defaults_are_the_original_definition():
    s = load_settings(environ={})
    assert s.cpu_cuts == (0.25, 0.5, 0.75)
    assert s.response_time_cuts == (0.3, 0.6, 1.0)
    assert s.request_rate_cuts == (15.0, 30.0, 60.0)
    assert s.failure_threshold == 0.3
    assert s.mongo_uri is None


def test_environment_overrides_every_setting_type():
    s = load_settings(
        environ={
            "MONGO_URI": "mongodb://db:27017",
            "PYCEMAKER_FAILURE_THRESHOLD": "0.25",
            "PYCEMAKER_RESPONSE_TIME_CUTS": "0.2, 0.5, 0.9",
            "PYCEMAKER_MODELS_DIR": "/srv/models",
            "PYCEMAKER_WORKERS": "4",
            "PYCEMAKER_CORS_ORIGINS": "https://a.example,https://b.example",
        }
    )
    assert s.mongo_uri == "mongodb://db:27017"
    assert s.failure_threshold == 0.25
    assert s.response_time_cuts == (0.2, 0.5, 0.9)
    assert s.models_dir == Path("/srv/models")
    assert s.workers == 4
    assert s.cors_origins == ("https://a.example", "https://b.example")


def test_config_file_then_environment(tmp_path):
    cfg = tmp_path / "pycemaker.toml"
    cfg.write_text('[pycemaker]\nfailure_threshold = 0.2\ncpu_cuts = [0.3, 0.6, 0.9]\nport = 6000\n')
    s = load_settings(environ={"PYCEMAKER_PORT": "7000"}, config_file=cfg)
    assert s.failure_threshold == 0.2 and s.cpu_cuts == (0.3, 0.6, 0.9)
    assert s.port == 7000  # the environment wins over the file


def test_secrets_from_files(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    s = load_settings(environ={"PYCEMAKER_API_TOKEN_FILE": str(token)})
    assert s.api_token == "s3cret"
    assert s.redacted()["api_token"] == "***"


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"PYCEMAKER_CPU_CUTS": "0.5,0.25,0.75"}, "strictly increasing"),
        ({"PYCEMAKER_CPU_CUTS": "0.5,0.75"}, "3 comma-separated"),
        ({"PYCEMAKER_PORT": "http"}, "port"),
        ({"PYCEMAKER_FAILURE_THRESHOLD": "2"}, "failure_threshold"),
        ({"PYCEMAKER_TRAIN_MAX_WINDOWS": "-1"}, "train_max_windows"),
    ],
)
def test_bad_values_are_named(environ, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=environ)


def test_unknown_config_keys_are_refused(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("failur_threshold = 0.2\n")
    with pytest.raises(SettingsError, match="failur_threshold"):
        load_settings(environ={}, config_file=cfg)


def test_cli_overrides_ignore_unset_flags():
    s = override(Settings(), port=None, workers=3)
    assert s.port == 5000 and s.workers == 3


@pytest.mark.parametrize("raw, value", [(None, 0.95), ("0.9", 0.9), ("1", 1.0), ("", None), ("off", None), ("None", None)])
def test_memory_exhaustion_is_a_share_of_the_heap_or_off(raw, value):
    environ = {} if raw is None else {"PYCEMAKER_MEMORY_EXHAUSTION": raw}
    assert load_settings(environ=environ, config_file=None).memory_exhaustion == value


@pytest.mark.parametrize("raw", ["0", "1.2", "-0.5"])
def test_memory_exhaustion_outside_the_heap_is_refused(raw):
    with pytest.raises(SettingsError, match="memory_exhaustion"):
        load_settings(environ={"PYCEMAKER_MEMORY_EXHAUSTION": raw}, config_file=None)
