"""The Kaggle API at the network boundary: credentials checked up front, errors made readable.

The `kaggle` package is imported lazily and quietly: importing it already tries to authenticate and
prints help to stdout when it cannot. No message or log line of this module shows a secret.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from pathlib import Path

from doggan.errors import DogganError

log = logging.getLogger("doggan")

SETUP = (
    "Kaggle credentials not found. Create an API token on your Kaggle account page "
    "(Settings > API > Create New Token) and save it as ~/.kaggle/kaggle.json (chmod 600), "
    "or set KAGGLE_USERNAME and KAGGLE_KEY."
)


def config_dir() -> Path:
    """The folder where the Kaggle client looks for kaggle.json (same rules as the client)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not home.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return home


def _config_file() -> dict:
    """The values of kaggle.json, {} when there is none; an error naming the file when it is unusable."""
    path = config_dir() / "kaggle.json"
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DogganError(f"{path}: not valid JSON (expected {{'username': ..., 'key': ...}})") from None
    if not isinstance(values, dict):
        raise DogganError(f"{path}: expected a JSON object with 'username' and 'key'")
    return values


def secrets() -> list[str]:
    """Every secret the client may use (API key, access token), to keep them out of messages."""
    found = [os.environ.get("KAGGLE_KEY", ""), os.environ.get("KAGGLE_API_TOKEN", "")]
    with contextlib.suppress(DogganError):
        found.append(str(_config_file().get("key", "")))
    return [s for s in found if len(s) >= 4]


def redact(text: str) -> str:
    """`text` with every Kaggle secret replaced by ***."""
    for secret in secrets():
        text = text.replace(secret, "***")
    return text


def username() -> str | None:
    """The Kaggle user the credentials name (KAGGLE_USERNAME, else kaggle.json), without the network;
    None when only an access token is set up, which names no user."""
    return os.environ.get("KAGGLE_USERNAME") or _config_file().get("username") or None


def credentials_source() -> str | None:
    """Where the Kaggle client will find credentials, or None when it will find none (no network)."""
    values = _config_file()
    username = os.environ.get("KAGGLE_USERNAME") or values.get("username")
    key = os.environ.get("KAGGLE_KEY") or values.get("key")
    if username and key:
        if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
            return "environment (KAGGLE_USERNAME, KAGGLE_KEY)"
        path = config_dir() / "kaggle.json"
        if os.name != "nt" and path.stat().st_mode & 0o077:
            log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
        return str(path)
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "environment (KAGGLE_API_TOKEN)"
    for name in ("access_token", "access_token.txt", "credentials.json"):
        path = Path.home() / ".kaggle" / name
        if path.is_file():
            return str(path)
    if username or key:
        have, lack = ("username", "key") if username else ("key", "username")
        raise DogganError(
            f"Kaggle credentials incomplete: a {have} is set but no {lack} "
            f"(KAGGLE_{lack.upper()} or '{lack}' in {config_dir() / 'kaggle.json'}). {SETUP}"
        )
    return None


def authenticate():
    """An authenticated `KaggleApi`, or a DogganError that says how to set credentials up."""
    source = credentials_source()
    if source is None:
        raise DogganError(SETUP)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except SystemExit:
        raise DogganError(f"Kaggle did not accept the credentials from {source}. {SETUP}") from None
    except OSError as exc:  # requests' errors (token checks go over the network) are OSErrors
        raise explain(exc, "Kaggle authentication") from None
    finally:
        for line in printed.getvalue().splitlines():
            if line.strip():
                log.debug("kaggle: %s", redact(line))
    log.info("Kaggle credentials from %s", source)
    return api


def explain(exc: Exception, what: str, competition: str | None = None) -> DogganError:
    """Turn an API failure into a readable error; a 403 on a competition means its rules."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 403 and competition:
        return DogganError(
            f"{what}: Kaggle answered 403 Forbidden. Accept the competition's rules first, at "
            f"https://www.kaggle.com/c/{competition}/rules (the API cannot accept them for you)."
        )
    if status == 401:
        return DogganError(f"{what}: Kaggle answered 401 Unauthorized; check your API token. {SETUP}")
    if status == 404:
        return DogganError(f"{what}: Kaggle answered 404 Not Found; check the name in params.yaml")
    if status == 429:
        return DogganError(f"{what}: Kaggle answered 429 Too Many Requests; try again later")
    detail = f"HTTP {status}" if status else type(exc).__name__
    return DogganError(redact(f"{what} failed ({detail}: {exc})"))
