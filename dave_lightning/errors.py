"""The package's exception hierarchy.

Every error raised on purpose by ``dave_lightning`` derives from :class:`DaveError`, so
``except DaveError`` catches all of them. The specific classes also derive from the closest
builtin (``TypeError`` or ``ValueError``) so code written against the builtins keeps working.

Example:
    >>> from dave_lightning.errors import BadInputError, DaveError
    >>> try:
    ...     raise BadInputError.for_argument("images", "a 4-D tensor", "shape (3, 32, 32)")
    ... except DaveError as error:
    ...     print(error)
    `images`: expected a 4-D tensor, received shape (3, 32, 32).
"""

from __future__ import annotations

__all__ = [
    "BadInputError",
    "ConfigurationError",
    "DaveError",
    "ModelCreationError",
    "UnsupportedModelError",
]


class DaveError(Exception):
    """Base class of every error raised on purpose by ``dave_lightning``."""


class BadInputError(DaveError, ValueError):
    """An argument has the wrong type, shape, dtype or value."""

    @classmethod
    def for_argument(cls, name: str, expected: str, received: str) -> BadInputError:
        """Build the error with the house message format.

        Args:
            name: The argument's name as the caller wrote it.
            expected: What was expected, e.g. ``"a 4-D tensor (B, C, H, W)"``.
            received: What was received, e.g. ``"shape (3, 32, 32)"``.

        Returns:
            An error whose message names the argument, the expectation and what was received.
        """
        return cls(f"`{name}`: expected {expected}, received {received}.")


class ConfigurationError(BadInputError):
    """A component was configured with options that cannot work together."""


class UnsupportedModelError(DaveError, TypeError):
    """The model contains modules whose effective (frozen-operator) form is unknown."""


class ModelCreationError(DaveError):
    """timm could not build a model.

    An unknown name, arguments the model does not take, or weights that cannot be fetched;
    raised by ``dave-lightning explain`` and the demo's classifier with a one-line message.
    """
