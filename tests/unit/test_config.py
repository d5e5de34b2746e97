import pytest

from core.kernel.config import settings_from_env


def test_empty_variables_mean_unset(tmp_path: object) -> None:
    settings = settings_from_env(
        {
            "MNEMO_LOG_LEVEL": "",
            "MNEMO_DEFAULT_BRAIN": "",
            "MNEMO_API_KEY": "",
            "MNEMO_DATABASE_URL": "",
        }
    )
    assert settings.log_level == "INFO"
    assert settings.default_brain == "default"
    assert settings.api_key is None
    assert settings.database_url.startswith("sqlite:///")


def test_lambda_defaults_to_tmp() -> None:
    settings = settings_from_env({"AWS_LAMBDA_FUNCTION_NAME": "mnemo-api"})
    assert settings.on_lambda
    assert settings.database_url == "sqlite:////tmp/mnemo/mnemo.db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MNEMO_LOG_LEVEL", "verbose"),
        ("MNEMO_MAX_BODY_BYTES", "1MB"),
        ("MNEMO_SCHEMA_PROBE_SECONDS", "x"),
    ],
)
def test_bad_values_say_what_to_fix(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        settings_from_env({name: value})
