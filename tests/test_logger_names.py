"""Every logger of the service and the pass library sits under ``pointpass.``, so one logging
setting (``logging.getLogger("pointpass")``) reaches them all."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import app
import passes


def _import_all() -> None:
    for package in (app, passes):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".migrations" not in module.name:
                importlib.import_module(module.name)


def test_every_logger_is_under_pointpass() -> None:
    _import_all()
    # Real loggers only (not the placeholders of a dotted name's parents); "app" itself is
    # Flask's logger, named after the application's import name.
    ours = [name for name, logger in logging.root.manager.loggerDict.items()
            if isinstance(logger, logging.Logger) and name != "app"
            and name.split(".")[0] in ("app", "passes")]
    assert ours == [], f"loggers outside pointpass.: {sorted(ours)}"
    assert any(name.startswith("pointpass.") for name in logging.root.manager.loggerDict)
