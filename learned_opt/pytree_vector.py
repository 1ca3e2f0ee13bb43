"""Pack a pytree of float arrays into one flat float64 vector and back.

scipy.optimize works on a vector ``x ∈ R^n``; users work on dicts (any pytree) of arrays. A
:class:`PackSpec`, built once from ``x0``, defines the bijection

    pack(tree)   = concat_i ravel(leaf_i).astype(float64)        (leaves in x0's order)
    unpack(vec)  = tree with leaf_i = vec[o_i : o_i + n_i].reshape(shape_i).astype(dtype_i)

where ``o_i`` is the offset and ``n_i = prod(shape_i)`` the size of leaf ``i``. Unlike
``jax.tree_util.tree_flatten`` (which sorts dict keys), leaves are ordered depth-first with every
dict visited in **insertion order**, and rebuilt dicts keep that order at every level. Every leaf
comes back in its own dtype (float16, bfloat16, float32, float64, ...) and array type (NumPy array,
NumPy scalar, Python float, JAX array or CPU ``torch.Tensor``; torch is looked up, never imported,
see :mod:`learned_opt._torch_bridge`). Casting a float16/bfloat16/float32 value to float64 and
back is exact, so ``unpack(pack(x)) == x`` bit for bit.

The spec is hashable and compares equal for trees of equal structure, shapes and dtypes, so it
can be a static argument of ``jax.jit`` (one compilation per structure).
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt import _torch_bridge as _tb

__all__ = ["PackSpec", "make_spec", "keystr", "tree_paths", "host_array"]

# leaf array kinds
NUMPY, NUMPY_SCALAR, PYFLOAT, JAX, TORCH = "numpy", "numpy_scalar", "float", "jax", "torch"


def host_array(leaf: Any) -> Any:
    """A leaf NumPy can read: torch tensors detached and moved to host, everything else as is."""
    return _tb.to_host(leaf) if _tb.is_tensor(leaf) else leaf

_DICT_TYPES = (dict, OrderedDict, defaultdict)


class _Attr(str):
    """Path element: a namedtuple field (rendered ``.name``)."""


class _Child(int):
    """Path element: the i-th child of a custom registered pytree node (rendered ``<i>``)."""


def keystr(path: Sequence[Any]) -> str:
    """Render a key path like ``['layer1']['w'][0]`` (``<root>`` for the empty path)."""
    if not path:
        return "<root>"
    parts = []
    for k in path:
        if isinstance(k, _Attr):
            parts.append("." + str.__str__(k))
        elif isinstance(k, _Child):
            parts.append(f"<{int(k)}>")
        else:
            parts.append(f"[{k!r}]")
    return "".join(parts)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _one_level(x: Any):
    """Children and one-level treedef of a registered pytree node, or None if ``x`` is a leaf."""
    children, treedef = jax.tree_util.tree_flatten(x, is_leaf=lambda y: y is not x)
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:
        return None
    return children, treedef


def _skeleton(x: Any, path: tuple, leaves: list, paths: list):
    """Describe the structure of ``x`` as a hashable nested tuple; collect leaves in order."""
    if x is None:
        return ("none",)
    tx = type(x)
    if tx in _DICT_TYPES:
        factory = x.default_factory if tx is defaultdict else None
        items = tuple((k, _skeleton(v, path + (k,), leaves, paths)) for k, v in x.items())
        return ("dict", tx, factory, items)
    if _is_namedtuple(x):
        kids = tuple(_skeleton(v, path + (_Attr(f),), leaves, paths) for f, v in zip(tx._fields, x))
        return ("namedtuple", tx, kids)
    if tx in (list, tuple):
        kids = tuple(_skeleton(v, path + (i,), leaves, paths) for i, v in enumerate(x))
        return ("seq", tx, kids)
    node = _one_level(x)
    if node is None:
        leaves.append(x)
        paths.append(path)
        return ("leaf", len(leaves) - 1)
    children, treedef = node
    kids = tuple(_skeleton(v, path + (_Child(i),), leaves, paths) for i, v in enumerate(children))
    return ("node", treedef, kids)


def _walk(skel: tuple, x: Any, path: tuple, out: list, what: str) -> None:
    """Collect the leaves of ``x`` (a tree shaped like ``skel``) in spec order, checking structure."""
    kind = skel[0]
    if kind == "leaf":
        out.append((path, x))
        return
    if kind == "none":
        if x is not None:
            raise ValueError(f"{what}: expected None at {keystr(path)}, got {type(x).__name__}")
        return
    if kind == "dict":
        if not isinstance(x, dict):
            raise TypeError(f"{what}: expected a dict at {keystr(path)}, got {type(x).__name__}")
        want = [k for k, _ in skel[3]]
        missing = [k for k in want if k not in x]
        extra = [k for k in x if k not in set(want)]
        if missing or extra:
            msg = [f"{what}: keys at {keystr(path)} do not match x0"]
            if missing:
                msg.append("missing " + ", ".join(keystr(path + (k,)) for k in missing))
            if extra:
                msg.append("unexpected " + ", ".join(keystr(path + (k,)) for k in extra))
            raise ValueError("; ".join(msg))
        for k, sub in skel[3]:
            _walk(sub, x[k], path + (k,), out, what)
        return
    if kind in ("seq", "namedtuple"):
        kids = skel[2]
        if not isinstance(x, (list, tuple)) or len(x) != len(kids):
            n = len(x) if isinstance(x, (list, tuple)) else None
            raise ValueError(f"{what}: expected a {skel[1].__name__} of length {len(kids)} at "
                             f"{keystr(path)}, got {type(x).__name__}" + (f" of length {n}" if n is not None else ""))
        fields = skel[1]._fields if kind == "namedtuple" else None
        for i, (sub, v) in enumerate(zip(kids, x)):
            _walk(sub, v, path + (_Attr(fields[i]) if fields else i,), out, what)
        return
    # generic registered node
    node = _one_level(x)
    if node is None or node[1] != skel[1]:
        raise ValueError(f"{what}: structure at {keystr(path)} does not match x0 "
                         f"(expected {skel[1]}, got {type(x).__name__})")
    for i, (sub, v) in enumerate(zip(skel[2], node[0])):
        _walk(sub, v, path + (_Child(i),), out, what)


def _build(skel: tuple, leaves: Sequence[Any]) -> Any:
    kind = skel[0]
    if kind == "leaf":
        return leaves[skel[1]]
    if kind == "none":
        return None
    if kind == "dict":
        items = [(k, _build(sub, leaves)) for k, sub in skel[3]]
        if skel[1] is defaultdict:
            return defaultdict(skel[2], items)
        return skel[1](items)
    if kind == "namedtuple":
        return skel[1](*[_build(sub, leaves) for sub in skel[2]])
    if kind == "seq":
        return skel[1](_build(sub, leaves) for sub in skel[2])
    return skel[1].unflatten([_build(sub, leaves) for sub in skel[2]])


def _leaf_info(path: tuple, leaf: Any):
    """(kind, shape, dtype) of an x0 leaf; TypeError for anything that is not a real float array."""
    if _tb.is_tensor(leaf):
        if leaf.is_complex() or not leaf.is_floating_point():
            raise TypeError(f"x0 leaf at {keystr(path)} is a torch tensor of dtype {leaf.dtype}; only real "
                            "floating-point leaves (float16, bfloat16, float32, float64) can be optimized")
        if leaf.device.type != "cpu":
            raise TypeError(f"x0 leaf at {keystr(path)} is a torch tensor on {leaf.device}; only CPU tensors "
                            "are supported (move it with .cpu())")
        if leaf.layout != _tb.torch_module().strided:
            raise TypeError(f"x0 leaf at {keystr(path)} is a {leaf.layout} torch tensor; only dense tensors")
        return TORCH, tuple(int(s) for s in leaf.shape), _tb.numpy_dtype(leaf)
    if isinstance(leaf, jax.Array):
        kind = JAX
    elif isinstance(leaf, np.ndarray):
        kind = NUMPY
    elif isinstance(leaf, np.generic):
        kind = NUMPY_SCALAR
    elif isinstance(leaf, float):
        kind = PYFLOAT
    elif isinstance(leaf, (bool, int, complex)):
        raise TypeError(f"x0 leaf at {keystr(path)} is a Python {type(leaf).__name__}; "
                        "only floating-point leaves can be optimized (use e.g. 1.0 or np.float64)")
    else:
        raise TypeError(f"x0 leaf at {keystr(path)} has unsupported type {type(leaf).__name__}; "
                        "expected a NumPy/JAX floating-point array")
    dtype = np.dtype(leaf.dtype) if kind != PYFLOAT else np.dtype(np.float64)  # pyright: ignore[reportAttributeAccessIssue]  (kind says: an array)
    if not jnp.issubdtype(dtype, jnp.floating):
        what = ("complex" if dtype.kind == "c" else "boolean" if dtype.kind == "b"
                else "integer" if dtype.kind in "iu" else "not floating point")
        raise TypeError(f"x0 leaf at {keystr(path)} has dtype {dtype.name} ({what}); only real "
                        "floating-point leaves (float16, bfloat16, float32, float64) can be optimized")
    shape = tuple(int(s) for s in np.shape(leaf))
    return kind, shape, dtype


class PackSpec:
    """Structure, shapes, dtypes and array types of ``x0``: the dict ↔ vector bijection.

    Attributes: ``paths`` (key path per leaf, in pack order), ``shapes``, ``dtypes``, ``kinds``,
    ``sizes``, ``offsets`` and ``size`` (= n, the length of the packed vector).
    """

    __slots__ = ("skeleton", "paths", "shapes", "dtypes", "kinds", "sizes", "offsets", "size",
                 "_key", "_hash")

    def __init__(self, skeleton, paths, shapes, dtypes, kinds):
        self.skeleton = skeleton
        self.paths = tuple(paths)
        self.shapes = tuple(shapes)
        self.dtypes = tuple(dtypes)
        self.kinds = tuple(kinds)
        self.sizes = tuple(int(np.prod(s, dtype=np.int64)) for s in self.shapes)
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])[:-1])
        self.size = int(sum(self.sizes))
        self._key = (skeleton, self.shapes, tuple(d.str for d in self.dtypes), self.kinds)
        self._hash = hash(self._key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: Any) -> bool:
        return self is other or (isinstance(other, PackSpec) and self._hash == other._hash
                                 and self._key == other._key)

    def __repr__(self) -> str:
        leaves = ", ".join(f"{keystr(p)}: {d.name}{list(s)}" for p, s, d in zip(self.paths, self.shapes, self.dtypes))
        return f"PackSpec(n={self.size}; {leaves})"

    @property
    def has_float64(self) -> bool:
        """True if any leaf is float64 (the x64 policy of :mod:`learned_opt.minimize` keys on this)."""
        return any(d == np.float64 for d in self.dtypes)

    @property
    def has_torch(self) -> bool:
        """True if any leaf of x0 is a torch tensor (the objective is then differentiated by autograd)."""
        return TORCH in self.kinds

    # -- structure -----------------------------------------------------------------------------
    def leaves(self, tree: Any, what: str = "tree") -> list:
        """Leaves of ``tree`` (shaped like x0) in pack order; ValueError/TypeError naming the path."""
        out: list = []
        _walk(self.skeleton, tree, (), out, what)
        return [v for _, v in out]

    def build(self, leaves: Sequence[Any]) -> Any:
        """Rebuild a tree shaped like x0 (insertion order kept) from leaves in pack order."""
        return _build(self.skeleton, leaves)

    def broadcast_leaves(self, tree: Any, what: str) -> list:
        """Leaves of a tree that matches x0 *up to* leaves, where each leaf may be a scalar, None or
        an array of the leaf's shape (used for bounds). A single scalar/None applies to every leaf."""
        if tree is None or np.isscalar(tree) or (isinstance(tree, (np.ndarray, jax.Array)) and np.ndim(tree) == 0):
            return [tree] * len(self.paths)
        out: list = []
        _walk(self.skeleton, tree, (), out, what)
        return [v for _, v in out]

    # -- NumPy side (host) --------------------------------------------------------------------
    def pack(self, tree: Any, what: str = "tree", out: np.ndarray | None = None) -> np.ndarray:
        """Flatten ``tree`` (same structure and shapes as x0) into a float64 vector.

        Checks every leaf's shape; TypeError for complex/non-numeric leaves, naming the key path.
        """
        pairs: list = []
        _walk(self.skeleton, tree, (), pairs, what)
        vec = np.empty(self.size, dtype=np.float64) if out is None else out
        for (path, leaf), shape, off, size in zip(pairs, self.shapes, self.offsets, self.sizes):
            arr = np.asarray(host_array(leaf))
            if arr.dtype.kind not in "fiub" and not jnp.issubdtype(arr.dtype, jnp.floating):
                raise TypeError(f"{what}: leaf at {keystr(path)} has dtype {arr.dtype} "
                                "(expected a real floating-point array)")
            if arr.shape != shape:
                raise ValueError(f"{what}: leaf at {keystr(path)} has shape {arr.shape}, expected {shape}")
            vec[off:off + size] = arr.reshape(-1)
        return vec

    def unpack(self, vec: Any, copy: bool = True) -> Any:
        """The tree for a flat vector, each leaf in x0's dtype and array type (JAX leaves → JAX)."""
        vec = np.asarray(vec)
        leaves = []
        with jax.enable_x64(self.has_float64):
            for shape, dtype, kind, off, size in zip(self.shapes, self.dtypes, self.kinds, self.offsets, self.sizes):
                piece = vec[off:off + size].reshape(shape)
                if kind == JAX:
                    leaves.append(jnp.asarray(piece, dtype=dtype))
                elif kind == TORCH:
                    leaves.append(_tb.from_host(piece, dtype))
                elif kind == NUMPY:
                    leaves.append(piece.astype(dtype, copy=True) if copy else piece.astype(dtype, copy=False))
                elif kind == NUMPY_SCALAR:
                    leaves.append(dtype.type(piece.reshape(())[()]))
                else:
                    leaves.append(float(piece.reshape(())[()]))
        return self.build(leaves)

    # -- JAX side (inside jit) ----------------------------------------------------------------
    def unpack_jax(self, vec: jax.Array) -> Any:
        """Traceable unpack: slices of a JAX vector cast to each leaf's dtype (JAX arrays)."""
        leaves = [jax.lax.slice(vec, (o,), (o + s,)).reshape(sh).astype(d)
                  for sh, d, o, s in zip(self.shapes, self.dtypes, self.offsets, self.sizes)]
        return self.build(leaves)

    def pack_jax(self, tree: Any, dtype: Any = None, what: str = "tree") -> jax.Array:
        """Traceable pack: concatenation of the raveled leaves of ``tree`` cast to ``dtype``."""
        leaves = self.leaves(tree, what)
        if dtype is None:
            dtype = jnp.result_type(*[jnp.asarray(x).dtype for x in leaves]) if leaves else jnp.float32
        parts = [jnp.ravel(jnp.asarray(x)).astype(dtype) for x in leaves]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), dtype)

    def to_kinds(self, tree_leaves: Sequence[Any]) -> Any:
        """Convert leaves (any array type, right dtype) to x0's array types and rebuild the tree."""
        out = []
        with jax.enable_x64(self.has_float64):
            for leaf, dtype, kind in zip(tree_leaves, self.dtypes, self.kinds):
                if kind == JAX:
                    out.append(jnp.asarray(leaf, dtype=dtype))
                elif kind == TORCH:
                    out.append(_tb.from_host(np.asarray(host_array(leaf)).astype(np.float64), dtype))
                elif kind == NUMPY:
                    out.append(np.array(host_array(leaf), dtype=dtype))
                elif kind == NUMPY_SCALAR:
                    out.append(dtype.type(np.asarray(leaf).reshape(())[()]))
                else:
                    out.append(float(np.asarray(leaf).reshape(())[()]))
        return self.build(out)


def make_spec(x0: Any) -> PackSpec:
    """Build the :class:`PackSpec` of ``x0``.

    Raises ``ValueError`` if x0 has no leaves or only zero-size leaves (nothing to optimize) and
    ``TypeError`` naming the key path of any integer, boolean, complex or non-array leaf.
    """
    leaves: list = []
    paths: list = []
    skel = _skeleton(x0, (), leaves, paths)
    if not leaves:
        raise ValueError("x0 is empty: it has no array leaves to optimize")
    infos = [_leaf_info(p, leaf) for p, leaf in zip(paths, leaves)]
    kinds, shapes, dtypes = zip(*infos)
    spec = PackSpec(skel, paths, shapes, dtypes, kinds)
    if spec.size == 0:
        raise ValueError("x0 is empty: all of its leaves have zero size "
                         f"({', '.join(keystr(p) for p in paths)})")
    return spec


def tree_paths(x0: Any) -> list[str]:
    """Key paths of x0's leaves in pack order (insertion order), rendered with :func:`keystr`."""
    return [keystr(p) for p in make_spec(x0).paths]
