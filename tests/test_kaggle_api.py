import json
import logging

import pytest

from doggan import kaggle_api
from doggan.errors import DogganError

KEY = "0123456789abcdef0123456789abcdef"


class HTTPError(OSError):
    """Shaped like requests.HTTPError: an OSError with the response attached."""

    def __init__(self, status, message=""):
        super().__init__(message or f"{status} Client Error")
        self.response = type("Response", (), {"status_code": status})()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home folder with no Kaggle credentials, and no Kaggle variables in the environment."""
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def write_config(home, values, mode=0o600):
    folder = home / ".kaggle"
    folder.mkdir(exist_ok=True)
    path = folder / "kaggle.json"
    path.write_text(values if isinstance(values, str) else json.dumps(values))
    path.chmod(mode)
    return path


def test_missing_credentials_say_where_to_put_them(home):
    assert kaggle_api.credentials_source() is None
    with pytest.raises(DogganError, match=r"~/\.kaggle/kaggle\.json \(chmod 600\).*KAGGLE_USERNAME"):
        kaggle_api.authenticate()


def test_credentials_are_found_in_the_environment_or_kaggle_json(home, monkeypatch):
    path = write_config(home, {"username": "alice", "key": KEY})
    assert kaggle_api.credentials_source() == str(path)
    path.unlink()
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    assert kaggle_api.credentials_source().startswith("environment")


def test_loose_permissions_are_warned_about(home, caplog):
    write_config(home, {"username": "alice", "key": KEY}, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="doggan"):
        kaggle_api.credentials_source()
    assert "chmod 600" in caplog.text and KEY not in caplog.text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ('["alice"]', "JSON object"),
        (json.dumps({"username": "alice"}), "no key"),
        (json.dumps({"key": KEY}), "no username"),
    ],
    ids=["not json", "not an object", "no key", "no username"],
)
def test_unusable_kaggle_json_is_named_without_showing_the_key(home, content, match):
    path = write_config(home, content)
    with pytest.raises(DogganError, match=match) as err:
        kaggle_api.authenticate()
    assert KEY not in str(err.value)
    if match.startswith("not valid") or match == "JSON object":
        assert str(path) in str(err.value)


def test_authenticate_returns_an_authenticated_client(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
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


def test_the_key_never_appears_in_an_error(home, monkeypatch):
    write_config(home, {"username": "alice", "key": KEY})
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token-" + KEY[::-1])
    leak = HTTPError(500, f"500 Server Error for url https://x/?key={KEY}&token=token-{KEY[::-1]}")
    message = str(kaggle_api.explain(leak, "download", "generative-dog-images"))
    assert "500" in message and KEY not in message and KEY[::-1] not in message
