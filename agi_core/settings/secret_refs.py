"""`Secret`: a settings value that names where a password or token is kept, never the secret itself.

A settings file is copied, committed, pasted into issues, hashed into snippets and run records and
bundled with exports; a secret written there leaks with each copy. So a `Secret` setting holds a
*reference*: ``{env = "NAME"}`` (an environment variable) or ``{file = "~/.config/agi/NAME"}`` (a
file only its owner can read, as OpenSSH insists of a private key). A literal string is refused
when the settings are read, naming the fix. The value is read at use (`Secret.reveal`), each time,
and never kept: repr, str, `model_dump` and JSON show the reference, so nothing that prints or
writes settings can leak it.

>>> secret = Secret.parse({"env": "AGI_SSH_PASSPHRASE"})
>>> secret, str(secret)
(Secret(env='AGI_SSH_PASSPHRASE'), '*** (env AGI_SSH_PASSPHRASE)')
>>> secret.reference()
{'env': 'AGI_SSH_PASSPHRASE'}
>>> Secret.parse("hunter2")
Traceback (most recent call last):
...
agi_core.settings.secret_refs.SecretError: a secret is never written as text in settings: name where it is kept
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema

from ..base.errors import AgiError

__all__ = ["Secret", "SecretError", "is_reference"]

_KINDS = ("env", "file")


class SecretError(AgiError, ValueError):
    """A secret setting written as text, a reference of the wrong form, or a secret that cannot be
    read (variable unset, file missing or readable by others). A `ValueError` too, so pydantic
    reports it against the key that held it; its message never holds the secret."""


class Secret:
    """Where a secret is kept: an environment variable (``env``) or an owner-only file (``file``).

    Immutable and comparable by its reference; the secret itself is read by `reveal` only.
    """

    __slots__ = ("_kind", "_name")

    def __init__(self, *, env: str | None = None, file: str | None = None) -> None:
        given = [(kind, value) for kind, value in (("env", env), ("file", file)) if value is not None]
        if len(given) != 1 or not isinstance(given[0][1], str) or not given[0][1].strip():
            raise SecretError("a secret reference names exactly one of env or file, as text",
                              fix=_FIX)
        object.__setattr__(self, "_kind", given[0][0])
        object.__setattr__(self, "_name", given[0][1].strip())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Secret is immutable")

    @classmethod
    def parse(cls, value: Any) -> Secret:
        """A `Secret` from a settings value: ``{env = "NAME"}`` or ``{file = "PATH"}``. Text (or
        anything else) is refused with `SecretError`, whose message does not repeat the value."""
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            raise SecretError("a secret is never written as text in settings: name where it is kept", fix=_FIX)
        if not isinstance(value, Mapping) or set(value) - set(_KINDS) or len(value) != 1:
            keys = sorted(map(str, value)) if isinstance(value, Mapping) else type(value).__name__
            raise SecretError(f"a secret reference is {{env = \"NAME\"}} or {{file = \"PATH\"}}, found {keys}", fix=_FIX)
        return cls(**{str(k): v for k, v in value.items()})

    @property
    def kind(self) -> str:
        """``"env"`` or ``"file"``."""
        return self._kind

    @property
    def name(self) -> str:
        """The environment variable's name or the file's path (as written, ``~`` unexpanded)."""
        return self._name

    def reference(self) -> dict[str, str]:
        """The reference as settings write it: ``{"env": NAME}`` or ``{"file": PATH}``."""
        return {self._kind: self._name}

    def toml(self) -> str:
        """The reference as a TOML inline table: ``{env = "NAME"}``."""
        return f"{{{self._kind} = {json.dumps(self._name)}}}"

    def reveal(self, setting: str = "a secret setting") -> str:
        """The secret, read now from its variable or file; ``setting`` (the dotted key) names it in errors.

        A file must be a regular file that neither group nor others may use (mode ``0600`` or
        ``0400``), else it is refused; one trailing newline (``echo secret > FILE``) is dropped.
        """
        if self._kind == "env":
            value = os.environ.get(self._name)
            if not value:
                raise SecretError(
                    f"{setting}: the environment variable {self._name} is {'empty' if value == '' else 'not set'}",
                    fix=f"export {self._name} in the environment agi runs in, or keep the secret in a file only you can "
                        f"read and name it: {setting} = {{file = \"~/.config/agi/secret\"}}")
            return value
        return _read_private(Path(self._name).expanduser(), setting)

    def __repr__(self) -> str:
        return f"Secret({self._kind}={self._name!r})"

    def __str__(self) -> str:
        return f"*** ({self._kind} {self._name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self._kind, self._name) == (other._kind, other._name)

    def __hash__(self) -> int:
        return hash((Secret, self._kind, self._name))

    def __reduce__(self) -> tuple[Any, ...]:
        """Copied and pickled as its reference (``dataclasses.asdict`` deep-copies the settings
        inside a `ClusterSpec`); immutable slots refuse the default way."""
        return (Secret.parse, (self.reference(),))

    # -- pydantic: validated by `parse`, serialised as its reference (python and JSON alike)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(lambda secret: secret.reference()))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "object", "description": 'a reference: {env = "NAME"} or {file = "PATH"} (0600)',
                "properties": {"env": {"type": "string"}, "file": {"type": "string"}},
                "minProperties": 1, "maxProperties": 1, "additionalProperties": False}


def is_reference(value: Any) -> bool:
    """Whether a settings value has the form of a secret's reference: a table of ``env`` or ``file``."""
    return isinstance(value, Mapping) and bool(value) and set(value) <= set(_KINDS)


_FIX = ('name where the secret is kept: KEY = {env = "NAME"} (an environment variable) or '
        'KEY = {file = "~/.config/agi/NAME"} (a file: chmod 600)')


def _read_private(path: Path, setting: str) -> str:
    """The text of an owner-only file; a link's target is read, but must be owner-only too."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "error")
        raise SecretError(f"{setting}: secret file {path} cannot be read ({name}: {exc.strerror})",
                          fix=f"create it with the secret in it: (umask 077; cat > {path}), or correct {setting}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"{setting}: secret file {path} is not a regular file", fix=f"point {setting} at a file")
        if info.st_mode & 0o077:
            raise SecretError(
                f"{setting}: secret file {path} is mode {stat.S_IMODE(info.st_mode):04o}: readable or writable by "
                "users other than its owner, so it is refused", fix=f"chmod 600 {path}")
        if info.st_uid != os.geteuid():
            raise SecretError(f"{setting}: secret file {path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})",
                              fix=f"chown {os.geteuid()} {path}, or keep your own copy")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read()
    finally:
        os.close(fd)
    text = data.decode()
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
