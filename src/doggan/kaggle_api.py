"""The Kaggle API at the network boundary: credentials checked up front, errors made readable.

The `kaggle` package is imported lazily: importing it tries to authenticate at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from doggan.errors import DogganError

SETUP = (
    "Kaggle credentials not found. Create an API token on your Kaggle account page "
    "(Settings > API > Create New Token) and save it as ~/.kaggle/kaggle.json (chmod 600), "
    "or set KAGGLE_USERNAME and KAGGLE_KEY."
)


def credentials_source() -> str | None:
    """Where the Kaggle client will find credentials, or None when it will find none."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "environment (KAGGLE_USERNAME, KAGGLE_KEY)"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "environment (KAGGLE_API_TOKEN)"
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    path = config_dir / "kaggle.json"
    if path.is_file():
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError):
            raise DogganError(f"{path}: not valid JSON (expected username and key)") from None
        if not (isinstance(values, dict) and values.get("username") and values.get("key")):
            raise DogganError(f"{path}: kaggle.json needs both 'username' and 'key'")
        return str(path)
    return None


def authenticate():
    """An authenticated `KaggleApi`, or a DogganError that says how to set credentials up."""
    if credentials_source() is None:
        raise DogganError(SETUP)
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        api.authenticate()
    except SystemExit:
        raise DogganError(SETUP) from None
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
    detail = f"HTTP {status}" if status else type(exc).__name__
    message = f"{what} failed ({detail})"
    key = os.environ.get("KAGGLE_KEY")
    return DogganError(message.replace(key, "***") if key else message)
