"""The one translation of MLflow's errors into Steward's error tree.

MLflow signals what went wrong with an ``error_code`` on :class:`mlflow.exceptions.MlflowException`
(the codes of Databricks' ``ErrorCode`` enum); the database and HTTP layers under it raise their own
connection errors. Steward never matches message text: the code or the exception type decides.

==========================================================  =====================================
MLflow                                                      Steward
==========================================================  =====================================
``RESOURCE_DOES_NOT_EXIST``, ``NOT_FOUND``, ``ENDPOINT_...``  :class:`~steward.errors.NotFound`
``INVALID_PARAMETER_VALUE``, ``BAD_REQUEST``, ``MALFORMED_...``  :class:`~steward.errors.ValidationFailed`
``RESOURCE_ALREADY_EXISTS``, ``ALREADY_EXISTS``, ``RESOURCE_CONFLICT``,
``INVALID_STATE``, ``ABORTED``                              :class:`~steward.errors.Conflict`
any other code (``INTERNAL_ERROR`` is what the REST client raises when the
server cannot be reached), a database driver's operational or interface error,
``OSError`` (connection refused, timeouts)                  :class:`~steward.errors.BackendUnavailable`
==========================================================  =====================================

Anything else is a bug and propagates unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from steward.errors import BackendUnavailable, Conflict, NotFound, StewardError, ValidationFailed

__all__ = ["mlflow_errors", "translate_mlflow_error"]

logger = logging.getLogger(__name__)

NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"})
INVALID_CODES = frozenset(
    {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "SEARCH_QUERY_TOO_LONG", "SEARCH_QUERY_TOO_SHORT"}
)
CONFLICT_CODES = frozenset(
    {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_CONFLICT", "INVALID_STATE", "INVALID_STATE_TRANSITION", "ABORTED"}
)

# Exception types of the layers under MLflow that mean "the store cannot be used right now", by (module root, class name):
# SQLAlchemy's and the DB-API drivers' operational / interface errors, and the HTTP client's connection errors.
# Matched by name so this module imports none of those packages.
_UNAVAILABLE_TYPES = frozenset(
    {
        ("sqlalchemy", "OperationalError"),
        ("sqlalchemy", "InterfaceError"),
        ("sqlalchemy", "TimeoutError"),
        ("sqlite3", "OperationalError"),
        ("psycopg", "OperationalError"),
        ("psycopg", "InterfaceError"),
        ("requests", "ConnectionError"),
        ("requests", "Timeout"),
        ("urllib3", "HTTPError"),
        ("botocore", "EndpointConnectionError"),
    }
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        return True
    return any((cls.__module__.split(".")[0], cls.__name__) in _UNAVAILABLE_TYPES for cls in type(exc).__mro__)


def _mlflow_code(exc: BaseException) -> str | None:
    """The ``error_code`` of an ``MlflowException`` (or subclass), else None."""
    if not any(cls.__name__ == "MlflowException" and cls.__module__.startswith("mlflow") for cls in type(exc).__mro__):
        return None
    return str(getattr(exc, "error_code", "") or "INTERNAL_ERROR")


def translate_mlflow_error(exc: BaseException, *, what: str, uri: str) -> StewardError | None:
    """The Steward error for an exception raised by MLflow (or the layers under it), or None for anything else.

    Args:
        exc: What MLflow raised.
        what: The operation, for the message (``"reading model flights v3"``).
        uri: The tracking / registry store, named in unavailability messages (credentials stripped).
    """
    if isinstance(exc, StewardError):
        return exc
    where = _safe_uri(uri)
    code = _mlflow_code(exc)
    if code is not None:
        detail = _first_line(exc)
        if code in NOT_FOUND_CODES:
            return NotFound(f"{what}: {detail}", details={"mlflow_code": code})
        if code in INVALID_CODES:
            # the problem+json shape of errors: what the store rejected, by message (MLflow does not name the field)
            errors = [{"field": "", "message": detail, "type": code.lower()}]
            return ValidationFailed(f"{what}: {detail}", details={"errors": errors, "mlflow_code": code})
        if code in CONFLICT_CODES:
            return Conflict(f"{what}: {detail}", details={"mlflow_code": code})
        return BackendUnavailable(
            f"the MLflow store at {where} failed while {what}: {detail}",
            hint="check that the tracking server or database is up and storage.tracking_uri is right",
            details={"mlflow_code": code},
        )
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{what}: {_first_line(exc)}")
    if _is_unavailable(exc):
        return BackendUnavailable(
            f"the MLflow store at {where} is unreachable while {what}: {_first_line(exc)}",
            hint="start the database or tracking server, or fix storage.tracking_uri",
        )
    return None


@contextmanager
def mlflow_errors(what: str, *, uri: str) -> Iterator[None]:
    """Run a block of MLflow calls, re-raising what they raise as Steward errors (see :func:`translate_mlflow_error`)."""
    try:
        yield
    except StewardError:
        raise
    except Exception as exc:
        translated = translate_mlflow_error(exc, what=what, uri=uri)
        if translated is None:
            raise
        logger.debug("MLflow error while %s: %r", what, exc)
        raise translated from exc


def _safe_uri(uri: str) -> str:
    """The URI without a password (``postgresql://user:secret@host`` -> ``postgresql://user:***@host``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest:
        return uri
    creds, _, host = rest.rpartition("@")
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"
