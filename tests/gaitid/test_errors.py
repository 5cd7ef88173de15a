"""One error hierarchy: every deliberate error of the project derives from GaitidError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from gaitid.errors import GaitidError

#: The installed package; its migrations are scripts run by Alembic, not modules to import.
PACKAGE = "gaitid"
SKIPPED = ("gaitid.migrations",)
#: Control-flow signals that must subclass a framework's exception to work.
FRAMEWORK_SIGNALS = {
    "gaitid.service.limits._BodyTooLarge",
    "gaitid.service.walks.forms.TextFieldEncodingError",
}


def _modules() -> list[object]:
    package = importlib.import_module(PACKAGE)
    found = [package]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        if not info.name.startswith(SKIPPED):
            found.append(importlib.import_module(info.name))
    return found


def test_every_error_class_derives_from_gaitid_error() -> None:
    strays = []
    for module in _modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, BaseException):  # type: ignore[attr-defined]
                continue
            qualified = f"{cls.__module__}.{cls.__qualname__}"
            if not issubclass(cls, GaitidError) and qualified not in FRAMEWORK_SIGNALS:
                strays.append(qualified)
    assert strays == []


def test_one_checkpoint_error() -> None:
    from gaitid.model.export import CheckpointError
    from gaitid.training.checkpoint import CheckpointError as TrainingCheckpointError

    assert TrainingCheckpointError is CheckpointError
    assert issubclass(CheckpointError, GaitidError) and issubclass(CheckpointError, ValueError)
