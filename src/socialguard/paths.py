"""Where socialguard finds its files, the same for `run` and every other command.

Each location is, in order: the command-line option, an environment variable, the shipped default
(relative to the working directory, so a checkout runs as it is).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_RULES = "SOCIALGUARD_RULES"
ENV_STATE = "SOCIALGUARD_STATE"
ENV_LOG_DIR = "SOCIALGUARD_LOG_DIR"
ENV_CERTS = "SOCIALGUARD_CERTS"
ENV_CHECKPOINT_DIR = "SOCIALGUARD_CHECKPOINT_DIR"
ENV_AUDIT_KEY = "SOCIALGUARD_AUDIT_KEY"

DEFAULT_RULES = Path("rules/policy.yaml")
DEFAULT_STATE = Path("var")
DEFAULT_CERTS = Path("certs")
STORE_FILENAME = "socialguard.db"
AUDIT_KEY_FILENAME = "audit-signing.key"
CHECKPOINT_DIRNAME = "checkpoints"


def rules_path(option: Path | None = None) -> Path:
    """The rules file to load."""
    return option or Path(os.environ.get(ENV_RULES) or DEFAULT_RULES)


def state_dir(option: Path | None = None) -> Path:
    """The state directory: the overrides store lives here, and by default the decision log too."""
    return option or Path(os.environ.get(ENV_STATE) or DEFAULT_STATE)


def log_dir(option: Path | None = None, state: Path | None = None) -> Path:
    """The decision log directory (default: `<state>/log`)."""
    if option:
        return option
    env = os.environ.get(ENV_LOG_DIR)
    return Path(env) if env else state_dir(state) / "log"


def checkpoint_dir(option: Path | None = None, state: Path | None = None) -> Path:
    """The second sink for signed checkpoints (default: `<state>/checkpoints`): not in the log
    directory, so that a packaging's writable paths (the state directory, the log directory) hold
    everything the proxy writes, whatever the log directory's parent is."""
    if option:
        return option
    env = os.environ.get(ENV_CHECKPOINT_DIR)
    return Path(env) if env else state_dir(state) / CHECKPOINT_DIRNAME


def audit_key(option: Path | None = None, state: Path | None = None) -> Path:
    """The private key that signs checkpoints (default: `<state>/audit-signing.key`, made by
    `socialguard run` on first start or `socialguard audit keygen`)."""
    if option:
        return option
    env = os.environ.get(ENV_AUDIT_KEY)
    return Path(env) if env else state_dir(state) / AUDIT_KEY_FILENAME


def public_key_of(private: Path) -> Path:
    """Where a signing key's public half lives: beside it, `.key` replaced by `.pub`."""
    return private.with_name(private.name.removesuffix(".key") + ".pub")


def certs_dir(option: Path | None = None) -> Path:
    """The interception CA's directory (mitmproxy's confdir layout)."""
    return option or Path(os.environ.get(ENV_CERTS) or DEFAULT_CERTS)


def store_path(state: Path | None = None) -> Path:
    """The SQLite file of the overrides store."""
    return state_dir(state) / STORE_FILENAME
