"""The ``pycemaker`` command. Each package registers its own subcommands.

Command modules only build argparse parsers; the work (and heavy imports such as
torch) happens inside the handlers, so ``pycemaker serve`` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from telemetry.settings import SettingsError, get_settings, override
from telemetry.store import DatabaseUnavailable

log = logging.getLogger("pycemaker")

#: Modules with a ``register(subparsers)`` function. A side that is not installed
#: (no torch in the serving image) is skipped when its module cannot be imported.
COMMAND_MODULES = (
    "telemetry.commands",
    "training.commands",
    "serving.commands",
    "evaluation.commands",
    "testbed.commands",
    "pycemaker.demo",
    "pycemaker.family",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pycemaker", description="Scores a web application's health, forecasts it and says how long until it fails.")
    parser.add_argument("--config", help="TOML config file (default: $PYCEMAKER_CONFIG or ./pycemaker.toml)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default: $PYCEMAKER_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part of the product is not in this checkout or image
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings() if not args.config else _load(args.config)
        settings = override(settings, log_level=args.log_level)
    except SettingsError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args, settings) or 0)
    except (DatabaseUnavailable, SettingsError) as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


def _load(path: str):
    from telemetry.settings import load_settings

    return load_settings(config_file=path)


if __name__ == "__main__":
    sys.exit(main())
