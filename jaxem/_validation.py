"""Input checks that run on the host, before anything is traced."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def float_dtype():
    """float64 when ``jax_enable_x64`` is on, else float32."""
    return jnp.result_type(float)


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


def numeric_array(x, name: str = "x", owner: str = "") -> np.ndarray:
    """Host view of ``x`` as a real numeric (or boolean) NumPy array, dtype kept.

    The one check of "is this an array of real numbers" that ``em.fit``, the
    estimators and the CLI share: sparse matrices, strings, ``None``, object
    arrays of non-numbers and complex numbers raise ``TypeError``.
    ``owner`` (e.g. ``"GaussianMixture"``) prefixes the message.
    """
    at = _prefix(owner)
    if hasattr(x, "tocsr") or hasattr(x, "toarray"):
        raise TypeError(
            f"{at}sparse input is not supported ({name} is {type(x).__name__}); "
            f"convert it with {name}.toarray()."
        )
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{at}{name} must be an array of numbers, got {type(x).__name__}.")
    try:
        arr = np.asarray(x)
    except Exception as err:  # pragma: no cover - exotic array-likes
        raise TypeError(f"{at}{name} must be array-like: {err}") from err
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{at}{name} must hold numbers, got dtype object.") from None
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(
            f"{at}{name} must be real, got dtype {arr.dtype}; pass the real and imaginary "
            "parts as separate columns."
        )
    if not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        raise TypeError(f"{at}{name} must hold numbers, got dtype {arr.dtype}.")
    return arr


def as_float_array(x, name: str = "x") -> np.ndarray:
    """Host copy of ``x`` as an array of the float dtype, with clear errors."""
    return numeric_array(x, name).astype(np.dtype(float_dtype()), copy=False)


def check_float_range(arr: np.ndarray, name: str = "x") -> None:
    """Raise if ``arr`` (finite in its own dtype) is too large for the float dtype's statistics.

    Why: the families' statistics hold squares and sums over rows; in float32
    (largest value 3.4e38) ``N · max|x|²`` overflows to infinity long before
    a single entry does, and the fit then returns NaN parameters. A value that
    float32 cannot hold at all (1e40) would otherwise be reported as an
    "infinite entry" the user never wrote. Checked on the host, before tracing.
    """
    dtype = np.dtype(float_dtype())
    if (
        arr.size == 0
        or arr.dtype == object
        or not np.issubdtype(arr.dtype, np.number)
        or np.issubdtype(arr.dtype, np.complexfloating)
    ):
        return  # empty, or not numbers: as_float_array says what is wrong
    with np.errstate(invalid="ignore", over="ignore"):
        top = float(np.nanmax(np.abs(arr.astype(np.float64, copy=False)), initial=0.0))
    if not np.isfinite(top):
        return  # infinity and NaN are reported by the callers, with their own advice
    n = max(int(arr.shape[0]), 1)
    limit = float(np.sqrt(np.finfo(dtype).max / n)) / 4
    if top > limit:
        bits = dtype.itemsize * 8
        fix = (
            "rescale it (e.g. divide by its standard deviation)"
            if dtype == np.float64
            else "rescale it (e.g. divide by its standard deviation), or fit in float64: "
            "wrap the call in `with jax.enable_x64(True):` (or set "
            "jax.config.update('jax_enable_x64', True) at start-up)"
        )
        raise ValueError(
            f"{name} has entries as large as {top:.3g} in magnitude: in float{bits} (largest "
            f"number {np.finfo(dtype).max:.3g}) the fit's sums of squares over {n} rows "
            f"overflow above about {limit:.3g}; {fix}."
        )


MISSING_OPTIONS = (None, "raise", "marginalize")


def check_missing(missing, owner: str = "") -> bool:
    """Validate a ``missing`` argument; return whether NaN entries are missing values.

    ``None`` or ``"raise"``: NaN raises; ``"marginalize"``: NaN entries are
    missing values, integrated out of the likelihood.
    """
    if missing is None or (isinstance(missing, str) and missing in MISSING_OPTIONS):
        return missing == "marginalize"
    raise ValueError(
        f"{_prefix(owner)}missing must be None, 'raise' or 'marginalize' (None and 'raise': "
        f"NaN raises; 'marginalize': NaN entries are missing values, integrated out), "
        f"got {missing!r}."
    )


def backend(x) -> str | None:
    """The platform (``"cpu"``, ``"gpu"``, ...) where array ``x`` lives; ``None`` for host data."""
    return next(iter(x.sharding.device_set)).platform if isinstance(x, jax.Array) else None


def _row_sharded(x) -> bool:
    """Whether ``x`` is a JAX array split over several devices (data parallelism)."""
    return isinstance(x, jax.Array) and len(x.sharding.device_set) > 1


def row_sharding(x, ndim: int):
    """``x``'s sharding of rows, for an array of ``ndim`` dimensions with the same rows."""
    sharding = x.sharding
    spec = getattr(sharding, "spec", None)
    if spec is None or ndim == x.ndim:
        return sharding
    from jax.sharding import NamedSharding, PartitionSpec

    first = spec[0] if len(spec) else None
    return NamedSharding(sharding.mesh, PartitionSpec(first, *([None] * (ndim - 1))))


def place_like(arr, x):
    """Put a host array with ``x``'s rows where ``x``'s rows are (same sharding on axis 0)."""
    if not _row_sharded(x):
        return jnp.asarray(arr)
    return jax.device_put(arr, row_sharding(x, np.ndim(arr)))


def _prepare_distributed(model, x, missing):
    """Validate a global array whose rows live on several processes, shard by shard."""
    if missing == "marginalize":
        raise ValueError(
            "missing='marginalize' is not supported for data spread over several processes; "
            "impute, or fit each process's data with missing values on one host."
        )
    for shard in x.addressable_shards:
        local = as_float_array(np.asarray(shard.data))
        if not np.all(np.isfinite(local)):
            raise ValueError(
                "x contains NaN or infinite entries on this process; remove or impute them."
            )
        if local.size:
            model._check_data(local)
    return x.astype(float_dtype())


def is_unit_tree(x) -> bool:
    """Whether ``x`` is data given as a pytree of arrays (a dict, tuple or NamedTuple).

    A list is an array-like (``[1.0, 2.0]`` is one array), as in NumPy.
    """
    return isinstance(x, (dict, tuple))


def first_leaf(x):
    """The first array of data ``x`` (``x`` itself for an array)."""
    return jax.tree.leaves(x)[0] if is_unit_tree(x) else x


def n_units(x) -> int:
    """The number of units (rows, sequences…): the shared leading axis of ``x``'s arrays."""
    return int(np.shape(first_leaf(x))[0])


def unit_size(x) -> int:
    """Numbers per unit, summed over ``x``'s arrays (what a chunk's work scales with)."""
    return max(1, sum(int(np.prod(np.shape(a)[1:])) for a in jax.tree.leaves(x)))


def take_units(x, index):
    """The units ``index`` (an index array or slice) of every array of ``x``."""
    return jax.tree.map(lambda a: a[index], x)


def _prepare_tree(model, x, missing, fitting: bool):
    """Validate data given as a pytree of arrays sharing a leading axis of units.

    Floating leaves become the float dtype, integer leaves int32 (indices,
    counts, group labels), booleans stay; every leaf must be finite. Sharded
    JAX arrays keep their sharding.
    """
    if missing == "marginalize":
        raise ValueError(
            "missing='marginalize' integrates out NaN entries of an (N,)/(N, D) array; for data "
            "given as a pytree (dict or tuple of arrays) handle missing entries in log_joint "
            "(mask them) or impute them."
        )
    if (
        isinstance(x, tuple)
        and not hasattr(x, "_fields")
        and all(isinstance(v, numbers.Number) for v in x)
    ):
        raise TypeError(
            "x is a tuple of numbers; a tuple is a pytree of arrays (one per kind of data). "
            "Pass np.asarray(x) or a list for one array of values."
        )
    # A list inside the pytree is one array (as at the top level), and a None
    # leaf is an error rather than an empty subtree.
    flat, treedef = jax.tree_util.tree_flatten_with_path(
        x, is_leaf=lambda a: a is None or isinstance(a, list)
    )
    if not flat:
        raise ValueError("x is an empty pytree; pass at least one array of units.")
    n = None
    out = []
    for path, leaf in flat:
        where = f"x{jax.tree_util.keystr(path)}"
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            raise ValueError(
                f"{where}: data spread over several processes must be one array, not a pytree."
            )
        if isinstance(leaf, (str, bytes)) or leaf is None:
            raise TypeError(f"{where} must be an array of numbers, got {type(leaf).__name__}.")
        arr = np.asarray(leaf)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise TypeError(f"{where} must hold numbers, got dtype {arr.dtype}.")
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(f"{where} must be real, got dtype {arr.dtype}.")
        if arr.ndim == 0:
            raise ValueError(
                f"{where} is a scalar; every array of x needs a leading axis of units (rows), "
                "shared by all of them. Put constants in the parameters or the model instead."
            )
        if n is None:
            n, first = arr.shape[0], where
        elif arr.shape[0] != n:
            raise ValueError(
                f"the arrays of x must share their leading axis (one entry per unit): {first} "
                f"has {n}, {where} has {arr.shape[0]}."
            )
        if np.issubdtype(arr.dtype, np.floating):
            check_float_range(arr, where)
            if not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"{where} contains NaN or infinite entries; remove or impute them (or "
                    "mask them inside log_joint)."
                )
            arr = arr.astype(np.dtype(float_dtype()), copy=False)
        elif np.issubdtype(arr.dtype, np.integer):
            if arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
                raise ValueError(f"{where}: integers must fit in int32 (indices, counts).")
            arr = arr.astype(np.int32, copy=False)
        out.append(place_like(arr, leaf))
    if n == 0:
        raise ValueError("x has no units (a leading axis of length 0); pass at least one.")
    tree = jax.tree_util.tree_unflatten(treedef, out)
    (model._check_data if fitting else model._check_support)(tree)
    return tree


def prepare_data(model, x, missing: str | None = None, *, fitting: bool = True):
    """Validate data for ``model``; return it as a device array of the float dtype.

    ``x`` is an ``(N,)``/``(N, D)`` array, or a pytree (dict, tuple,
    NamedTuple) of arrays sharing a leading axis of N units, returned as the
    same pytree of device arrays.

    With ``missing="marginalize"`` NaN entries are missing values: returns
    ``(x_filled, observed)`` where ``observed`` is a boolean device array of
    ``x``'s shape (or ``None`` when nothing is missing) and each missing entry
    of ``x_filled`` holds an observed value of its column (the one nearest the
    column's observed mean), so that every entry lies in the model's support.
    Otherwise NaN raises and only ``x`` is returned.

    ``fitting=False`` (scoring fitted parameters) checks the support only: a
    fit needs at least as many rows as components, scoring one row is fine.
    """
    check_missing(missing)
    custom = getattr(model, "_prepare_units", None)
    if custom is not None:  # a model whose units have their own structure (sequences)
        return custom(x, missing, fitting)
    if is_unit_tree(x):
        return _prepare_tree(model, x, missing, fitting)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return _prepare_distributed(model, x, missing)
    if not isinstance(x, (jax.Array, str, bytes)):  # before the cast: 1e40 is inf in float32
        try:
            raw = np.asarray(x)
        except Exception:  # as_float_array says what is wrong
            raw = np.zeros(0)
        check_float_range(raw)
    arr = as_float_array(x)
    if isinstance(x, jax.Array):
        check_float_range(arr)
    check = model._check_data if fitting else model._check_support
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"x must have shape (N,) or (N, D), got ndim={arr.ndim} with shape {arr.shape}; "
            "reshape it (e.g. x.reshape(len(x), -1))."
        )
    if arr.shape[0] == 0 or (arr.ndim == 2 and arr.shape[1] == 0):
        raise ValueError(f"x is empty (shape {arr.shape}); pass at least one sample.")
    if np.isfinite(arr).all():  # the common case: no mask to build
        check(arr)
        return place_like(arr, x) if missing != "marginalize" else (place_like(arr, x), None)
    nan = np.isnan(arr)
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        raise ValueError(
            f"x contains {n_inf} infinite entries; remove them (NaN marks a missing value, "
            "infinity is not one)."
        )
    if missing != "marginalize":
        if nan.any():
            rows = int(nan.reshape(len(arr), -1).any(axis=1).sum())
            raise ValueError(
                f"x contains {int(nan.sum())} NaN entries (in {rows} rows). If they are missing "
                "values, pass missing='marginalize' to integrate them "
                "out; otherwise remove or impute them before fitting."
            )
        check(arr)
        return place_like(arr, x)
    if not nan.any():
        check(arr)
        return place_like(arr, x), None
    model._check_missing(arr)
    filled = fill_missing(arr, nan)
    check(filled)
    return place_like(filled, x), place_like(~nan, x)


def fill_missing(arr: np.ndarray, nan: np.ndarray, fallback=None) -> np.ndarray:
    """``arr`` with each NaN entry (``nan``) replaced by an observed value of its column.

    The filler is the column's observed value nearest its observed mean, so it
    lies in the model's support; the filled entries are masked out of every
    density. A column with no observed value raises, unless ``fallback``
    (a function returning a ``(D,)`` row in the support) supplies its value.
    """
    cols = arr.reshape(len(arr), -1).copy()
    holes = nan.reshape(len(arr), -1)
    row = None
    for j in np.flatnonzero(holes.any(axis=0)):  # host-side, once per column
        seen = cols[~holes[:, j], j]
        if seen.size:
            cols[holes[:, j], j] = seen[np.argmin(np.abs(seen - seen.mean()))]
        elif fallback is None:
            raise ValueError(
                f"x: column {j} has no observed value (all NaN); drop it before fitting."
            )
        else:
            row = np.reshape(np.asarray(fallback()), -1) if row is None else row
            cols[:, j] = row[j]
    return cols.reshape(arr.shape)


def prepare_sample_weight(sample_weight, n: int, like=None) -> jax.Array:
    """``(N,)`` weights (ones by default), placed like the rows of ``like``."""
    if sample_weight is None:
        if like is not None and _row_sharded(like):
            sharding = row_sharding(like, 1)
            return jax.jit(lambda: jnp.ones(n, float_dtype()), out_shardings=sharding)()
        return jax.device_put(np.ones(n, float_dtype()))  # a transfer, not two small programs
    if isinstance(sample_weight, jax.Array) and not sample_weight.is_fully_addressable:
        return sample_weight.astype(float_dtype())
    w = check_sample_weight(sample_weight, n).astype(np.dtype(float_dtype()))
    return jnp.asarray(w) if like is None else place_like(w, like)


def check_sample_weight(
    sample_weight, n: int, owner: str = "", rows: str = "x", scale: bool = True
) -> np.ndarray:
    """``sample_weight`` as a float64 ``(n,)`` host array, or a clear error.

    Every weight finite and >= 0, a positive total, and (``scale``) a scale
    the float dtype holds (:func:`check_weight_scale`); the estimators pass
    ``scale=False`` because they rescale the weights themselves. ``rows``
    names the data.
    """
    at = _prefix(owner)
    w = numeric_array(sample_weight, "sample_weight", owner).astype(np.float64)
    if w.shape != (n,):
        raise ValueError(
            f"{at}sample_weight must have shape ({n},), one weight per row of {rows}, "
            f"got shape {w.shape}."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{at}sample_weight must be finite and >= 0.")
    if not w.sum() > 0:
        raise ValueError(f"{at}sample_weight must have a positive sum; all weights are zero.")
    if scale:
        check_weight_scale(w)
    return w


def check_weight_scale(w: np.ndarray, name: str = "sample_weight") -> None:
    """Raise if the weights' scale is outside what the float dtype holds reliably.

    Why: in float32, weights below the smallest normal number (1.2e-38) are
    flushed to zero on CPUs, so the total weight is 0 and every update is
    NaN; near the top of the range the weighted sums overflow. EM's answer
    depends on the weights' ratios (and on their scale only through a prior),
    so the fix is the user's: rescale them. Bounds: ``tiny**0.8`` and
    ``max**0.8`` (about 4e-31 and 3e30 in float32) leave room for the products
    and sums the fit forms.
    """
    dtype = np.dtype(float_dtype())
    top = float(np.max(w))
    lo, hi = float(np.finfo(dtype).tiny) ** 0.8, float(np.finfo(dtype).max) ** 0.8
    if top < lo or float(np.sum(w)) > hi:
        bits = dtype.itemsize * 8
        raise ValueError(
            f"{name} has largest weight {top:.3g} and total {float(np.sum(w)):.3g}, outside "
            f"what float{bits} holds reliably ({lo:.1g} to {hi:.1g}); only the weights' "
            f"ratios matter to the fit (and their scale to a prior), so rescale them, e.g. "
            f"{name} / {name}.max()."
        )


def prepare_labels(labels, n: int, n_states: int) -> jax.Array:
    """``(N,)`` int32 labels in ``[-1, n_states)``; -1 marks an unlabelled row."""
    arr = np.asarray(labels)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"labels must be integers (-1 for unknown), got dtype {arr.dtype}.")
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match x, got {arr.shape}.")
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError("labels must be whole numbers: a state index, or -1 for unknown.")
    if np.any(arr < -1) or np.any(arr >= n_states):
        bad = arr[(arr < -1) | (arr >= n_states)][:3]
        raise ValueError(
            f"labels must lie in [0, {n_states - 1}] (the latent states) or be -1 for "
            f"unknown; found e.g. {bad.tolist()}."
        )
    return jnp.asarray(arr.astype(np.int32))


def restart_keys(key, restarts: int) -> jax.Array:
    """``restarts`` keys, the i-th ``fold_in(key, i)``.

    Why not ``split``: the first ``R`` keys are the same for any number of
    restarts, so ``restarts=10`` runs ``restarts=1``'s start among others and
    its best is never worse.
    """
    return _fold_in_each(key, restarts)


def fold_in_each(key, restarts: int) -> jax.Array:
    """:func:`restart_keys` traced (inside a program that draws its own starts)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(restarts, dtype=jnp.uint32))


# one compiled program (persistently cached), not a few eager ops per process
_fold_in_each = jax.jit(fold_in_each, static_argnums=1)


def check_int(name: str, value, minimum: int, owner: str = "") -> int:
    """``value`` as an int ``>= minimum`` (``TypeError`` / ``ValueError`` naming ``name``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_prefix(owner)}{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{_prefix(owner)}{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_tol(tol) -> float:
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a number, got {tol!r}.")
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol}.")
    return float(tol)


def as_key(key):
    """Accept a typed key, a legacy uint32 key, or an int seed."""
    if isinstance(key, bool):
        raise TypeError("key must be a jax.random.key(...) or an int seed, got a bool.")
    if isinstance(key, numbers.Integral):
        if not -(2**63) <= int(key) < 2**63:  # what jax.random.key takes (an int64)
            raise ValueError(
                f"key: an int seed must lie in [-2**63, 2**63), got {key}; pass a smaller "
                "seed or a jax.random.key(...)."
            )
        return jax.random.key(int(key))
    try:
        arr = jnp.asarray(key)
    except TypeError as err:
        raise TypeError(f"key must be a jax.random.key(...) or an int seed, got {key!r}.") from err
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        if arr.shape != ():
            raise ValueError(f"key must be a single key, got a batch of shape {arr.shape}.")
        return arr
    if arr.dtype == jnp.uint32 and arr.shape == (2,):
        return jax.random.wrap_key_data(arr)
    raise TypeError(f"key must be a jax.random.key(...) or an int seed, got {key!r}.")
