"""argparse types made from the engine's checks: a CryoUNetError becomes argparse's message."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from cryounet.errors import CryoUNetError


def checked(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """argparse type from an engine check (argparse names the option)."""
    def convert(text: str):
        try:
            return check(text)
        except CryoUNetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = name
    return convert


def _threshold_or_rule(text: str) -> float | str:
    from cryounet.postprocess.threshold_rules import parse_threshold

    return parse_threshold(text, option=None)  # argparse names the option


#: A score threshold: a number or the name of a label-free rule.
threshold_or_rule = checked(_threshold_or_rule, "threshold")
