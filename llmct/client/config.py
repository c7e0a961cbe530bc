"""Where the gateway is and the API key to call it with: `$XDG_CONFIG_HOME/llmct/config.toml` (0600), written by
`llmct login`; LLMCT_URL and LLMCT_API_KEY override it (for CI and scripts)."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import CliError, Exit

URL_VAR, KEY_VAR = "LLMCT_URL", "LLMCT_API_KEY"


@dataclass(frozen=True)
class Config:
    """What the user commands need to call the gateway; `api_key_id` names the key `login` created (logout revokes
    it)."""

    url: str | None = None
    api_key: str | None = None
    api_key_id: str | None = None
    username: str | None = None


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The config file, under XDG_CONFIG_HOME (default ~/.config)."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "llmct" / "config.toml"


def normalized_url(url: str) -> str:
    """The gateway's base URL, checked: http(s), a host, no path, query or credentials in it."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"the gateway URL must look like https://host[:port], not {url!r}", Exit.USAGE)
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise CliError(f"give the gateway's base URL only (https://host[:port]), not {url!r}", Exit.USAGE)
    return url


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def read_file(path: Path) -> Config:
    """The stored config; an empty one when there is none. A file others may read is used, with a warning."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config()
    if path.stat().st_mode & 0o077:
        print(f"warning: {path} is readable by others: run `chmod 600 {path}`", file=sys.stderr)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{path} is not valid TOML ({exc}): run `llmct login` again", Exit.USAGE) from exc
    fields = {k: v for k, v in data.items() if k in Config.__dataclass_fields__ and isinstance(v, str)}
    return Config(**fields)


def load(environ: Mapping[str, str] = os.environ) -> Config:
    """The stored config with the environment's overrides."""
    stored = read_file(config_path(environ))
    url = environ.get(URL_VAR) or stored.url
    key = environ.get(KEY_VAR) or stored.api_key
    key_id = stored.api_key_id if key == stored.api_key else None
    return Config(url=url, api_key=key, api_key_id=key_id, username=stored.username)


def toml_text(config: Config) -> str:
    """The config as TOML: JSON's string escapes are TOML's basic-string escapes."""
    lines = ["# written by `llmct login`; holds an API key: keep it private (0600)"]
    for name, value in vars(config).items():
        if value is not None:
            lines.append(f"{name} = {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def save(config: Config, environ: Mapping[str, str] = os.environ) -> Path:
    """Write the config atomically, the folder 0700 and the file 0600 from the first byte (never readable by others,
    not even for a moment)."""
    path = config_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(toml_text(config))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def forget(environ: Mapping[str, str] = os.environ) -> bool:
    """Remove the stored config; whether there was one."""
    path = config_path(environ)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
