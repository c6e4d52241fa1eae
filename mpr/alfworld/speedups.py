"""Memoization for the two hot spots of TextWorld's PDDL engine.

Profiling a game (load, reset, 10 steps) shows two costs dominate:

* ``textworld.envs.pddl.textgen._parse_and_convert``: every observation and
  every admissible command is rendered by re-parsing the same grammar snippets
  with TatSu. The inputs repeat endlessly, so the parse is memoized on its
  arguments. ``derive`` mutates the returned symbols (it sets their
  ``context``), hence each hit returns a deep copy of the cached result.
* ``fast_downward.pddl2sas``: building a ``PddlState`` translates PDDL to SAS
  twice (plain and optimized), and ``reset`` rebuilds the state that ``load``
  just built. The translation is a pure function of (domain, problem, flags);
  a small LRU keyed on those makes the reset after a load nearly free. The
  translated task is only read afterwards, so sharing it is safe.

Both patches are process-wide and idempotent. ``install`` is called by the env
adapter according to its config, so the speed-up can be measured on and off.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import sys
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0


PARSE_STATS = CacheStats()
QUERY_STATS = CacheStats()
PDDL_STATS = CacheStats()
_originals: dict[str, Callable[..., Any]] = {}


def _memoized_parse(original: Callable[..., Any], maxsize: int = 50_000) -> Callable[..., Any]:
    cache: dict[tuple, Any] = {}

    def parse_and_convert(*args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        try:
            hit = cache[key]
        except (KeyError, TypeError):  # TypeError: unhashable argument, just parse
            PARSE_STATS.misses += 1
            result = original(*args, **kwargs)
            if len(cache) < maxsize:
                try:
                    cache[key] = copy.deepcopy(result)
                except TypeError:
                    pass
            return result
        PARSE_STATS.hits += 1
        return copy.deepcopy(hit)

    parse_and_convert.__wrapped__ = original  # type: ignore[attr-defined]
    return parse_and_convert


def _memoized_pddl2sas(
    original: Callable[..., Any], maxsize: int = 8, disk_dir: str | None = None
) -> Callable[..., Any]:
    """In-memory LRU of translations, backed by an optional on-disk cache shared by processes.

    A translation takes ~1 s per call and two calls are made per game, while its
    zlib-compressed pickle is ~70-90 KB and loads in milliseconds; the disk layer
    makes every later load of a game (other workers, other runs) nearly free.
    Entries are keyed by a hash of the inputs and fast-downward's version; an
    unreadable entry is recomputed and rewritten.
    """
    cache: OrderedDict[tuple, Any] = OrderedDict()

    def pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        key = (domain, problem, bool(optimize))
        if maxsize and key in cache:
            PDDL_STATS.hits += 1
            cache.move_to_end(key)
            return cache[key]
        path = _disk_path(disk_dir, key) if disk_dir else None
        result = _disk_load(path) if path else None
        if result is None:
            PDDL_STATS.misses += 1
            argv = sys.argv  # fast_downward overwrites sys.argv as a side effect; keep ours
            try:
                result = original(domain, problem, verbose=verbose, optimize=optimize)
            finally:
                sys.argv = argv
            if path:
                _disk_store(path, result)
        else:
            PDDL_STATS.disk_hits += 1
        if maxsize:
            cache[key] = result
            if len(cache) > maxsize:
                cache.popitem(last=False)
        return result

    pddl2sas.__wrapped__ = original  # type: ignore[attr-defined]
    return pddl2sas


def _disk_path(disk_dir: str, key: tuple) -> Path:
    from importlib.metadata import version

    digest = hashlib.sha256(repr((version("fast_downward_textworld"), *key)).encode()).hexdigest()
    return Path(disk_dir).expanduser() / digest[:2] / f"{digest}.pkl.zlib"


def _disk_load(path: Path) -> Any:
    try:
        return pickle.loads(zlib.decompress(path.read_bytes()))
    except FileNotFoundError:
        return None
    except Exception:  # a torn or foreign file: recompute and overwrite
        return None


def _disk_store(path: Path, result: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(zlib.compress(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), 1))
        os.replace(tmp, path)
    except OSError:  # a read-only or full disk only costs speed
        pass


def _memoized_query_parse(original: Callable[..., Any], maxsize: int = 10_000) -> Callable[..., Any]:
    """``Rule.parse_conjunctive_query`` is re-run for every conditional grammar symbol."""
    cache: dict[str, Any] = {}

    def parse_conjunctive_query(expr: str) -> Any:
        try:
            rule = cache[expr]
        except KeyError:
            QUERY_STATS.misses += 1
            rule = original(expr)
            if len(cache) < maxsize:
                cache[expr] = rule
            return rule
        QUERY_STATS.hits += 1
        return rule

    parse_conjunctive_query.__wrapped__ = original  # type: ignore[attr-defined]
    return parse_conjunctive_query


def _shallow_copy_context(original: Callable[..., Any]) -> Callable[..., Any]:
    """TextWorld deep-copies the variable and mapping dicts of every grammar symbol's context.

    Derivation only adds keys to those dicts (``.update``); it never mutates the
    entity infos or variables they hold, so copying the dicts is enough. The
    walkthrough-transcript test checks outputs are byte-identical either way.
    """

    def copy_context(context: dict) -> dict:
        return {
            "state": context["state"],
            "facts": context["facts"],
            "variables": dict(context["variables"]),
            "mapping": dict(context["mapping"]),
            "entity_infos": context["entity_infos"],
        }

    copy_context.__wrapped__ = original  # type: ignore[attr-defined]
    return copy_context


def install(parse_cache: bool = True, pddl_cache: bool = True, pddl_cache_dir: str | None = None) -> None:
    """Patch TextWorld/fast-downward in this process; each flag on or off, idempotently.

    ``parse_cache`` covers the text-generation path (grammar parse memo, query
    parse memo, shallow context copies); ``pddl_cache`` the PDDL translation,
    in memory and, when ``pddl_cache_dir`` is given, on disk.
    ``pddl2sas`` is wrapped even with its cache off, because fast-downward
    overwrites ``sys.argv`` and the wrapper restores it.
    """
    import fast_downward
    from textworld.envs.pddl import textgen
    from textworld.logic import Rule

    _patch(textgen, "_parse_and_convert", _memoized_parse if parse_cache else None)
    _patch(textgen, "copy_context", _shallow_copy_context if parse_cache else None)
    _patch(Rule, "parse_conjunctive_query", _memoized_query_parse if parse_cache else None, classmethod_=True)
    disk = pddl_cache_dir if pddl_cache else None
    make = partial(_memoized_pddl2sas, maxsize=8 if pddl_cache else 0, disk_dir=disk)
    _patch(fast_downward, "pddl2sas", make, mode=(pddl_cache, disk))


_installed: dict[str, Any] = {}


def _patch(owner: Any, attr: str, make: Callable | None, mode: Any = None, classmethod_: bool = False) -> None:
    """Set ``owner.attr`` to ``make(original)`` (or back to the original when make is None).

    Re-installing with the same mode keeps the existing wrapper and its cache.
    """
    key = f"{getattr(owner, '__name__', owner)}.{attr}"
    original = _originals.setdefault(key, owner.__dict__[attr])
    mode = (make is not None) if mode is None else mode
    if make is None:
        setattr(owner, attr, original)
        _installed.pop(key, None)
        return
    if key in _installed and _installed[key] == mode:
        return
    if classmethod_:
        setattr(owner, attr, staticmethod(make(original.__get__(None, owner))))
    else:
        setattr(owner, attr, make(original))
    _installed[key] = mode
