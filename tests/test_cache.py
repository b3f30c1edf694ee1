"""The persistent compilation cache: on by default, moved or switched off by JAXEM_CACHE_DIR.

Each case runs in a fresh interpreter (the cache is configured at ``import jaxem``).
"""

import os
import subprocess
import sys

import pytest

FIT = """
import jax, jax.numpy as jnp, jaxem as em
x = jnp.linspace(-3.0, 3.0, 64)
em.fit(em.Mixture(em.Normal(), 2), x, key=jax.random.key(0), restarts=2, max_iter=3)
print(em.compilation_cache_dir)
"""


def _run(env_value, tmp_path, code=FIT):
    env = {k: v for k, v in os.environ.items() if k != "JAXEM_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    env["HOME"] = str(tmp_path / "home")
    if env_value is not None:
        env["JAXEM_CACHE_DIR"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def _files(path):
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


@pytest.mark.slow
def test_cache_defaults_to_the_user_cache_dir_and_is_reused(tmp_path):
    where = _run(None, tmp_path)
    assert where == str(tmp_path / "xdg" / "jaxem" / "xla")
    first = _files(tmp_path / "xdg" / "jaxem" / "xla")
    assert first, "the fit's programs were written to the cache"
    _run(None, tmp_path)  # a second process reads them: nothing new to write
    assert sorted(_files(tmp_path / "xdg" / "jaxem" / "xla")) == sorted(first)


@pytest.mark.slow
def test_cache_moves_or_switches_off(tmp_path):
    moved = tmp_path / "elsewhere"
    assert _run(str(moved), tmp_path) == str(moved) and _files(moved)
    assert _run("off", tmp_path) == "None"
    assert not _files(tmp_path / "xdg")
    # a cache the user configured in JAX first is kept
    own = tmp_path / "own"
    code = f"import jax\njax.config.update('jax_compilation_cache_dir', {str(own)!r})\n" + FIT
    assert _run(None, tmp_path, code) == str(own)  # (with JAX's own thresholds)
