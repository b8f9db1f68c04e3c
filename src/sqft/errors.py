"""User-facing errors.

`SqftError` is a `ValueError`: library callers can catch it like any bad-argument error, and the CLI turns it
into one clear line and a non-zero exit instead of a traceback. Raise it (or a subclass) for anything the user
can fix; use `assert` only for internal invariants.
"""

from __future__ import annotations

import importlib

__all__ = ["SqftError", "OutputExistsError", "MissingExtraError"]


class SqftError(ValueError):
    """A problem with the user's input, with a message that names the problem and the fix."""


class OutputExistsError(SqftError):
    """The output path exists and `overwrite` was not requested."""


class MissingExtraError(SqftError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional dependency or raise `MissingExtraError` naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"this feature needs the optional package '{module}': pip install 'sqft[{extra}]'"
        ) from e
