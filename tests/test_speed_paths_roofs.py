"""bench_outer's machine roofs: FLOP counts, the row-chunked thin chain, best-of merging."""
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_outer  # noqa: E402


def test_thin_kernels_compute_the_chain_and_count_its_flops():
    kernels = bench_outer.make_roofs(chunks=(64, 128), rows=1000)
    assert set(kernels) == {"square", "thin_64", "thin_128", "thin_whole"}
    assert kernels["square"][2] == 2 * 1024 ** 3
    fn, (xs, w), flops = kernels["thin_128"]
    assert xs.shape == (7, 128, 32)  # 1000 // 128 chunks of 128 rows
    assert flops == 4 * 2 * 896 * 32 * 32
    x = xs.reshape(-1, 32)
    for i in range(4):
        x = jax.nn.relu(x @ w[i])
    np.testing.assert_allclose(fn(xs, w), jnp.sum(x, 0), rtol=1e-4)
    assert kernels["thin_whole"][2] == 4 * 2 * 1000 * 32 * 32


def test_roofs_take_the_best_over_chunks_and_passes():
    kernels = bench_outer.make_roofs(chunks=(64, 256), rows=2048)
    first = bench_outer.roofs(repeats=2, kernels=kernels)
    thin = {k: v for k, v in first["best_by_kernel"].items() if k.startswith("thin_")}
    assert first["thin_chain_gflops"] == max(thin.values()) > 0
    assert first["square_matmul_gflops"] == first["best_by_kernel"]["square"] > 0
    assert first["thin_chain_whole_array_gflops"] == first["best_by_kernel"]["thin_whole"]
    fake = dict(first, best_by_kernel={k: 1e9 for k in first["best_by_kernel"]},
                median_by_kernel={k: 1e9 for k in first["median_by_kernel"]})
    merged = bench_outer.roofs(repeats=1, kernels=kernels, previous=fake)
    assert merged["square_matmul_gflops"] == merged["thin_chain_gflops"] == 1e9
    assert merged["measured_passes"] == 2
