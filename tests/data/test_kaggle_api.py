import json
import logging

import pytest

from doggan.data import kaggle_api
from doggan.errors import DogganError


class HTTPError(OSError):
    """Shaped like requests.HTTPError: an OSError with the response attached."""

    def __init__(self, status, message=""):
        super().__init__(message or f"{status} Client Error")
        self.response = type("Response", (), {"status_code": status})()


def write_config(home, values, mode=0o600):
    folder = home / ".kaggle"
    folder.mkdir(exist_ok=True)
    path = folder / "kaggle.json"
    path.write_text(values if isinstance(values, str) else json.dumps(values))
    path.chmod(mode)
    return path


@pytest.mark.usefixtures("kaggle_home")
def test_missing_credentials_say_where_to_put_them(explains_kaggle_setup):
    assert kaggle_api.credentials_source() is None
    with pytest.raises(DogganError) as err:
        kaggle_api.authenticate()
    explains_kaggle_setup(str(err.value))


def test_credentials_are_found_in_the_environment_or_kaggle_json(kaggle_home, kaggle_key, monkeypatch):
    path = write_config(kaggle_home, {"username": "alice", "key": kaggle_key})
    assert kaggle_api.credentials_source() == str(path)
    path.unlink()
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", kaggle_key)
    assert kaggle_api.credentials_source().startswith("environment")


def test_loose_permissions_are_warned_about(kaggle_home, kaggle_key, caplog):
    write_config(kaggle_home, {"username": "alice", "key": kaggle_key}, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="doggan"):
        kaggle_api.credentials_source()
    assert "chmod 600" in caplog.text and kaggle_key not in caplog.text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (lambda key: "{not json", "not valid JSON"),
        (lambda key: '["alice"]', "JSON object"),
        (lambda key: json.dumps({"username": "alice"}), "no key"),
        (lambda key: json.dumps({"key": key}), "no username"),
    ],
    ids=["not json", "not an object", "no key", "no username"],
)
def test_unusable_kaggle_json_is_named_without_showing_the_key(kaggle_home, kaggle_key, content, match):
    path = write_config(kaggle_home, content(kaggle_key))
    with pytest.raises(DogganError, match=match) as err:
        kaggle_api.authenticate()
    assert kaggle_key not in str(err.value)
    if match.startswith("not valid") or match == "JSON object":
        assert str(path) in str(err.value)


@pytest.mark.usefixtures("kaggle_home")
def test_authenticate_returns_an_authenticated_client(kaggle_key, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", kaggle_key)
    api = kaggle_api.authenticate()
    assert type(api).__name__ == "KaggleApi"
    assert api.config_values["username"] == "alice"
    assert hasattr(api, "competition_download_files")


def test_forbidden_competition_says_to_accept_its_rules():
    error = kaggle_api.explain(HTTPError(403), "download", "generative-dog-images")
    assert "https://www.kaggle.com/c/generative-dog-images/rules" in str(error)


@pytest.mark.parametrize(("status", "match"), [(401, "API token"), (404, "Not Found"), (429, "later")])
def test_other_http_failures_are_explained(status, match):
    assert match in str(kaggle_api.explain(HTTPError(status), "download", "generative-dog-images"))


def test_the_key_never_appears_in_an_error(kaggle_home, kaggle_key, monkeypatch):
    write_config(kaggle_home, {"username": "alice", "key": kaggle_key})
    token = "token-" + kaggle_key[::-1]
    monkeypatch.setenv("KAGGLE_API_TOKEN", token)
    leak = HTTPError(500, f"500 Server Error for url https://x/?key={kaggle_key}&token={token}")
    message = str(kaggle_api.explain(leak, "download", "generative-dog-images"))
    assert "500" in message and kaggle_key not in message and kaggle_key[::-1] not in message
