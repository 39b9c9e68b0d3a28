"""Keyed pseudonymisation of identifiers (patient IDs, study UIDs, institutions).

Identifiers never reach an output file in clear text. They are replaced by
``HMAC-SHA256(key, kind + ":" + value)`` truncated to 16 hex digits (64 bits),
prefixed by the kind (``p-…`` for patients, ``st-…`` for studies, ``site-…``
for institutions). The same key maps the same identifier to the same
pseudonym across runs, so patients can be followed across datasets of one
project; without the key the mapping cannot be reversed or recomputed.

The key, in order of precedence:

1. the ``key`` argument (from the ``--secret-file`` option or the config);
2. the environment variable ``MEDAUDIT_SECRET`` (hex or any text);
3. the per-user secret file ``~/.config/medaudit/secret.key``
   (``$MEDAUDIT_SECRET_FILE`` overrides the location), created with 32 random
   bytes and mode 0600 on first use. Keep it out of shared folders; share it
   only with the sites whose data must link.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import warnings
from pathlib import Path
from typing import Literal

__all__ = ["DEFAULT_SECRET_FILE", "MIN_KEY_CHARS", "key_fingerprint", "load_or_create_secret",
           "pseudonymize"]

#: The shortest key accepted, in characters: 32 hex digits are 128 random bits. A
#: short or guessable key lets anyone who has it recompute pseudonyms from IDs.
MIN_KEY_CHARS = 32
MSG_WEAK_KEY = (
    "the pseudonymisation key from {source} is {n} character(s) long; a key needs at least "
    "{min} characters of random text, e.g. the output of "
    "python -c 'import secrets; print(secrets.token_hex(32))'"
)
MSG_KEY_MODE = (
    "secret file {path} can be read or written by other users (mode {mode:o}); anyone who "
    "reads it can link pseudonyms back to patient IDs: run chmod 600 {path}"
)

IdentifierKind = Literal["patient", "study", "site", "sample"]
_PREFIX = {"patient": "p-", "study": "st-", "site": "site-", "sample": "s-"}

#: Where the per-user secret lives unless ``MEDAUDIT_SECRET_FILE`` says otherwise.
DEFAULT_SECRET_FILE = Path("~/.config/medaudit/secret.key")


def load_or_create_secret(path: str | os.PathLike[str] | None = None) -> bytes:
    """The pseudonymisation key (see the module docstring for precedence).

    Parameters
    ----------
    path : path-like, optional
        A secret file to read (created with 32 random bytes if absent).

    Returns
    -------
    bytes
        The key.

    Raises
    ------
    ValueError
        When the key is shorter than :data:`MIN_KEY_CHARS`, the secret file is
        empty, not a regular file, or not readable text.

    Warns
    -----
    UserWarning
        When the secret file can be read or written by other users.
    """
    if path is None:
        env = os.environ.get("MEDAUDIT_SECRET")
        if env:
            return _checked(env.strip(), "the environment variable MEDAUDIT_SECRET")
        path = os.environ.get("MEDAUDIT_SECRET_FILE") or DEFAULT_SECRET_FILE
    p = Path(path).expanduser()
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    if not p.is_file():
        raise ValueError(f"secret file {p} is not a regular file (a folder or device?); give the "
                         "path of a key file, or a new path to have a key created there")
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        warnings.warn(MSG_KEY_MODE.format(path=p, mode=mode), stacklevel=2)
    try:
        text = p.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"secret file {p} is not text; write a random string into it "
                         "(or delete it to have a new key created)") from None
    if not text:
        raise ValueError(
            f"secret file {p} is empty; delete it to have a new key created, "
            "or write a random string into it"
        )
    return _checked(text, f"secret file {p}")


def _checked(text: str, source: str) -> bytes:
    if len(text) < MIN_KEY_CHARS:
        raise ValueError(MSG_WEAK_KEY.format(source=source, n=len(text), min=MIN_KEY_CHARS))
    return text.encode("utf-8")


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible fingerprint of the key (for cache keys and run.json)."""
    return hashlib.sha256(b"medaudit-key-fingerprint:" + key).hexdigest()[:12]


def pseudonymize(value: object, *, key: bytes, kind: IdentifierKind = "patient") -> str:
    """Keyed pseudonym of one identifier.

    Parameters
    ----------
    value : object
        The identifier (converted with ``str`` and stripped).
    key : bytes
        From :func:`load_or_create_secret`.
    kind : {'patient', 'study', 'site', 'sample'}
        Namespace: the same string maps differently per kind.

    Returns
    -------
    str
        E.g. ``'p-3fa2c19b0d7e4a61'``.
    """
    digest = hmac.new(key, f"{kind}:{str(value).strip()}".encode(), hashlib.sha256).hexdigest()
    return _PREFIX[kind] + digest[:16]
