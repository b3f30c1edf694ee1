"""JAX's persistent compilation cache, on by default in the user's cache directory.

A fresh Python process recompiles every program it runs; with the persistent
cache, a program compiled by an earlier process (same jax, same flags, same
shapes) is read from disk instead. At ``import jaxem`` the cache is switched
on in ``<user cache>/jaxem/xla`` unless:

- the user already configured one (``jax_compilation_cache_dir`` is set): theirs is kept;
- ``JAXEM_CACHE_DIR`` is ``off`` (or ``0``, ``false``, ``no``, empty): no cache;
- ``JAXEM_CACHE_DIR`` is a path: the cache goes there.

Every program is written, however fast it compiled (JAX's default threshold is
1 s, which would leave out most of a small fit's programs; the small ones a fit
dispatches still cost ~0.15 s per fresh process to recompile). The directory
is not bounded (JAX's size bound, ``jax_compilation_cache_max_size``, wrote
nothing at all here with jax 0.10.2); small fits write ~10 KB per program,
and deleting the directory is always safe.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "JAXEM_CACHE_DIR"
_OFF = {"", "0", "off", "false", "no", "none"}


def default_dir() -> Path:
    """``<user cache>/jaxem/xla``: XDG on Linux, ``~/Library/Caches`` on macOS, LOCALAPPDATA."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jaxem" / "xla"


def cache_dir() -> Path | None:
    """Where the cache will be (``None``: off), from ``JAXEM_CACHE_DIR``."""
    value = os.environ.get(ENV)
    if value is None:
        return default_dir()
    if value.strip().lower() in _OFF:
        return None
    return Path(value).expanduser()


def enable() -> Path | None:
    """Switch the cache on (see the module docstring); return its directory or ``None``."""
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own setting wins
        return Path(jax.config.jax_compilation_cache_dir)
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home, no permission: run without a cache
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
