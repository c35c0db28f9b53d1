"""The checks of a function's arguments, one family for every layer.

Each check returns the value it accepted (an int as a Python ``int``, a number as a ``float``) or raises
:class:`~losslens.errors.ConfigError` (a ``ValueError``) with one line in one form, naming the argument,
what it may be and what it was::

    method must be one of pca, tsne, phate (got 'umap')
    n must be an integer >= 1 (got 0)
    tol must be a finite number >= 0 (got nan)

Integers are Python or numpy integers, never bools; numbers are real numbers (numpy's too), never bools.
Checks of data (a tensor's shape, a file's content) are not argument checks and raise their own errors.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable

from losslens.errors import ConfigError


def integer(value) -> int | None:
    """``value`` as an int when it is an integer (Python or numpy, not a bool), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def refuse(name: str, allowed: str, value) -> ConfigError:
    """The error of every check: ``"<name> must be <allowed> (got <value>)"``; the caller raises it."""
    return ConfigError(f"{name} must be {allowed} (got {value!r})")


def check_choice(name: str, value, allowed: Iterable, describe: str | None = None):
    """``value`` when it is one of ``allowed`` (a bool matches only a bool), else a ConfigError listing them.

    Args:
        name: the argument's name, as the caller spells it.
        value: the value given.
        allowed: the values accepted.
        describe: what the message says ``value`` must be, in place of the list (for long lists).
    """
    allowed = tuple(allowed)
    if not any(_same(value, v) for v in allowed):
        raise refuse(name, describe or "one of " + ", ".join(v if isinstance(v, str) else repr(v) for v in allowed),
                     value)
    return value


def _same(value, choice) -> bool:
    if value is choice:
        return True
    if isinstance(value, bool) != isinstance(choice, bool) or isinstance(value, str) != isinstance(choice, str):
        return False
    try:
        return bool(value == choice)
    except (TypeError, ValueError):  # an array compared with a choice
        return False


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None, none: bool = False):
    """``value`` as an int in ``[minimum, maximum]`` (either bound may be left out), or ``None`` when ``none``
    allows it; else a ConfigError saying which integers are allowed."""
    if value is None and none:
        return None
    number = integer(value)
    if number is None or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise refuse(name, "an integer" + _bounds(minimum, maximum) + (" or None" if none else ""), value)
    return number


def check_number(name: str, value, minimum: float | None = None, maximum: float | None = None, positive: bool = False,
                 finite: bool = True, none: bool = False):
    """``value`` as a float in ``[minimum, maximum]``, above 0 when ``positive``, finite when ``finite`` (NaN is
    never accepted), or ``None`` when ``none`` allows it; else a ConfigError saying which numbers are allowed."""
    if value is None and none:
        return None
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    fits = (not math.isnan(number) and (math.isfinite(number) or not finite) and not (positive and number <= 0)
            and (minimum is None or number >= minimum) and (maximum is None or number <= maximum))
    if not fits:
        bounded = minimum is not None and maximum is not None  # then finite goes without saying
        kind = ("a finite number" if finite and not bounded else "a number") + (" > 0" if positive else "")
        raise refuse(name, kind + _bounds(minimum, maximum) + (" or None" if none else ""), value)
    return number


def check_probability(name: str, value, none: bool = False):
    """``value`` as a float from 0 to 1, or a ConfigError naming it."""
    return check_number(name, value, minimum=0, maximum=1, none=none)


def check_seed(seed, high: int = 2**63) -> int:
    """``seed`` as a Python int from 0 to ``high - 1``, or a ConfigError naming it.

    Args:
        seed: a seed given to a losslens function; Python and numpy integers are accepted, bools and
            floats are not.
        high: one above the largest seed the generator takes: torch's take up to 2**63 - 1, numpy's
            ``RandomState`` (scikit-learn's ``random_state``) up to 2**32 - 1.
    """
    value = integer(seed)
    if value is None or not 0 <= value < high:
        raise refuse("seed", f"an integer from 0 to 2**{high.bit_length() - 1} - 1", seed)
    return value


def _bounds(minimum, maximum) -> str:
    """`` from 1 to 64``, `` >= 1``, `` <= 0.5`` or nothing."""
    low, high = (b if b is None or isinstance(b, int) else f"{b:g}" for b in (minimum, maximum))
    if minimum is not None and maximum is not None:
        return f" from {low} to {high}"
    if minimum is not None:
        return f" >= {low}"
    return "" if maximum is None else f" <= {high}"
