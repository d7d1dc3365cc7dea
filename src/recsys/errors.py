"""User-facing errors: a one-paragraph message, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf.errors import MissingMandatoryValue

F = TypeVar("F", bound=Callable[..., Any])

USER_ERROR_EXIT_CODE = 2


class RecsysError(Exception):
    """An error caused by the user's input or settings, explained in plain words."""

    def __init__(self, message: str, *, path: object | None = None, stage: str | None = None):
        self.path = path
        self.stage = stage
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.stage:
            where.append(f"during {self.stage}")
        if self.path is not None:
            where.append(f"for '{self.path}'")
        prefix = f"[{' '.join(where)}] " if where else ""
        return prefix + super().__str__()


def exit_on_user_error(command: str) -> Callable[[F], F]:
    """Turn RecsysError (and a missing required override) into a clean message and exit code 2.

    Hydra prints a traceback for any exception escaping the task function; a user who
    passed a bad file deserves one readable paragraph instead.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except RecsysError as err:
                print(f"{command}: error: {err}", file=sys.stderr)
            except MissingMandatoryValue as err:
                key = getattr(err, "full_key", None) or "?"
                print(
                    f"{command}: error: missing required setting '{key}'; "
                    f"pass it on the command line, e.g. {command} {key}=VALUE",
                    file=sys.stderr,
                )
            sys.exit(USER_ERROR_EXIT_CODE)

        return wrapper  # type: ignore[return-value]

    return decorate
