"""dict/pytree <-> flat float64 vector packing (learned_opt.pytree_vector)."""
from collections import OrderedDict, namedtuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learned_opt.pytree_vector import make_spec

DTYPES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32), np.dtype(np.float64)]
SHAPES = [(), (1,), (3,), (2, 3), (0,), (2, 0, 3), (1, 1, 2)]
Pair = namedtuple("Pair", ["first", "second"])


# ---- an independent reference: insertion-order depth-first flattening written for the test ----
def ref_leaves(tree):
    if tree is None:
        return []
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in ref_leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in ref_leaves(v)]
    return [tree]


def same_structure_and_order(a, b):
    """True if a and b have the same container types and key order at every level."""
    if not isinstance(a, (dict, list, tuple)) and a is not None:
        return not isinstance(b, (dict, list, tuple)) and b is not None
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(same_structure_and_order(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_structure_and_order(x, y) for x, y in zip(a, b))
    return True


@st.composite
def leaves(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from(SHAPES))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.integers(-3, 4)
    values = (rng.standard_normal(shape) * scale).astype(dtype)
    if values.size and draw(st.booleans()):
        values.reshape(-1)[0] = -0.0
    kind = draw(st.sampled_from(["numpy", "jax"] if dtype != np.float64 else ["numpy", "jax64"]))
    if kind == "numpy":
        return values
    with jax.enable_x64(kind == "jax64"):
        return jnp.asarray(values)


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ_0123456789", min_size=1, max_size=6)
trees = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.dictionaries(keys, children, min_size=1, max_size=4),
        st.lists(children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.tuples(children, children).map(lambda t: Pair(*t)),
    ),
    max_leaves=8,
)


@settings(derandomize=True, max_examples=120, deadline=None)
@given(trees)
def test_round_trip_preserves_values_order_dtypes_and_types(tree):
    leaves_ = ref_leaves(tree)
    if not leaves_ or sum(np.size(x) for x in leaves_) == 0:
        with pytest.raises(ValueError, match="empty"):
            make_spec(tree)
        return
    spec = make_spec(tree)
    vec = spec.pack(tree)
    assert vec.dtype == np.float64 and vec.shape == (spec.size,)
    # pack order = insertion-order depth-first flattening (independent reference)
    expected = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in leaves_])
    np.testing.assert_array_equal(vec, expected)
    back = spec.unpack(vec)
    assert same_structure_and_order(back, tree)
    for a, b in zip(ref_leaves(back), ref_leaves(tree)):
        assert type(a) is type(b) or (isinstance(a, jax.Array) and isinstance(b, jax.Array))
        assert np.dtype(a.dtype) == np.dtype(b.dtype)
        assert a.shape == b.shape
        # bitwise: float64 holds every float16/bfloat16/float32 value exactly (signed zeros too)
        np.testing.assert_array_equal(np.asarray(a).reshape(-1).view(np.uint8),
                                      np.asarray(b).reshape(-1).view(np.uint8))
    # the spec is a function of structure/shapes/dtypes only
    assert make_spec(back) == spec and hash(make_spec(back)) == hash(spec)


@settings(derandomize=True, max_examples=15, deadline=None)
@given(trees)
def test_traceable_unpack_matches_host_unpack(tree):
    leaves_ = ref_leaves(tree)
    if not leaves_ or sum(np.size(x) for x in leaves_) == 0:
        return
    spec = make_spec(tree)
    vec = spec.pack(tree)
    seen = []

    def through(v):
        t = spec.unpack_jax(v)  # what the objective sees inside jit: insertion order, own dtypes
        seen.append((same_structure_and_order(t, tree),
                     [(np.dtype(a.dtype), a.shape) for a in ref_leaves(t)]))
        return spec.pack_jax(t, jnp.float64)

    with jax.enable_x64(True):
        repacked = np.asarray(jax.jit(through)(vec))
    ok, info = seen[0]
    assert ok
    assert info == [(np.dtype(b.dtype), np.shape(b)) for b in leaves_]
    np.testing.assert_array_equal(repacked, vec)


def test_insertion_order_not_sorted_order():
    x = {"zeta": np.array([1.0, 2.0]), "alpha": {"y": np.array(3.0), "b": np.array([4.0])}}
    spec = make_spec(x)
    np.testing.assert_array_equal(spec.pack(x), [1.0, 2.0, 3.0, 4.0])
    back = spec.unpack(np.array([5.0, 6.0, 7.0, 8.0]))
    assert list(back) == ["zeta", "alpha"] and list(back["alpha"]) == ["y", "b"]
    assert back["alpha"]["b"].tolist() == [8.0]
    # a JAX-built dict (sorted keys) is read by key, not by position
    jax_built = jax.tree_util.tree_map(lambda v: v, x)
    assert list(jax_built) == ["alpha", "zeta"]
    np.testing.assert_array_equal(spec.pack(jax_built), [1.0, 2.0, 3.0, 4.0])
    assert spec != make_spec({"alpha": x["alpha"], "zeta": x["zeta"]})


def test_container_and_scalar_kinds_round_trip():
    x = OrderedDict(b=[np.float32(1.5), 2.5], a=Pair(np.ones(2, np.float16), None))
    spec = make_spec(x)
    back = spec.unpack(spec.pack(x) * 2)
    assert type(back) is OrderedDict and list(back) == ["b", "a"]
    assert type(back["b"][0]) is np.float32 and back["b"][0] == 3.0
    assert type(back["b"][1]) is float and back["b"][1] == 5.0
    assert isinstance(back["a"], Pair) and back["a"].second is None and back["a"].first.dtype == np.float16


@pytest.mark.parametrize("leaf, match", [
    (np.arange(3), r"\['w'\]\['k'\].*int64"),
    (np.ones(2, np.complex64), r"\['w'\]\['k'\].*complex"),
    (np.array([True]), r"\['w'\]\['k'\].*bool"),
    (3, r"\['w'\]\['k'\].*int"),
    ("text", r"\['w'\]\['k'\]"),
])
def test_bad_leaves_raise_type_error_with_path(leaf, match):
    with pytest.raises(TypeError, match=match):
        make_spec({"v": np.zeros(2), "w": {"k": leaf}})


@pytest.mark.parametrize("x0", [{}, {"a": {}}, [], {"a": None}, {"a": np.zeros((0, 3))}])
def test_empty_x0_raises(x0):
    with pytest.raises(ValueError, match="empty"):
        make_spec(x0)


def test_pack_checks_keys_and_shapes_with_paths():
    spec = make_spec({"layer": {"w": np.zeros((2, 3)), "b": np.zeros(3)}, "s": np.zeros(())})
    with pytest.raises(ValueError, match=r"missing \['layer'\]\['b'\]"):
        spec.pack({"layer": {"w": np.zeros((2, 3))}, "s": 0.0})
    with pytest.raises(ValueError, match=r"unexpected \['layer'\]\['c'\]"):
        spec.pack({"layer": {"w": np.zeros((2, 3)), "b": np.zeros(3), "c": 1.0}, "s": 0.0})
    with pytest.raises(ValueError, match=r"\['layer'\]\['w'\] has shape \(3, 2\), expected \(2, 3\)"):
        spec.pack({"layer": {"w": np.zeros((3, 2)), "b": np.zeros(3)}, "s": 0.0})
    with pytest.raises(TypeError, match=r"\['s'\].*complex"):
        spec.pack({"layer": {"w": np.zeros((2, 3)), "b": np.zeros(3)}, "s": np.array(1j)})
