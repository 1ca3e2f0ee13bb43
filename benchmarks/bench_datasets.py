"""Load times of the TFDS data layer (``tasks.datasets``).

For each dataset, in a fresh temporary data_dir:

* ``prepare_s``: the one-time ``download_and_prepare`` (source read + array_record write);
* ``read_ms``: loading from the prepared data_dir with the in-process caches cleared (TFDS read,
  decode, split, scale, center) — the cost a new process pays; median of ``--repeats``;
* ``cached_ms``: a repeated ``load_*`` call in the same process (lru_cache hit); median;
* ``raw_ms``: the baseline, measured in the same run: reading the raw source directly with NumPy
  (``gzip`` + ``np.loadtxt`` for csv files, the generator for synthetic data, ``encode`` for
  text); ``read/raw`` is the ratio.

Also the wall time of a fresh ``python -c "load_image_dataset('digits')"`` against a prepared
data_dir (interpreter start, imports of jax/TFDS included), median of 3.

    python benchmarks/bench_datasets.py [--repeats 5] [--fashion]

Writes ``benchmarks/results/bench_datasets.json``. The measurements run in one window that records
the load average and CPU steal (:mod:`benchmarks.machine`); its summary is stored under
``"machine_summary"`` (``"machine"`` is the architecture string) and ``"quiet"`` says whether it
was quiet. The load that decides is the one before ``tasks.datasets`` was imported (the import is
itself timed, and the benchmark's own work raises the 1-minute average); busy results are marked
in the printed table.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import Window, describe, load_now  # noqa: E402

IDLE_LOAD = load_now()  # before the (timed) import below and everything after it
t0 = time.perf_counter()
from tasks.datasets import builders, loader, sources, text  # noqa: E402  (imports TFDS)

IMPORT_S = time.perf_counter() - t0


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _clear_caches():
    loader._read_dataset.cache_clear()
    loader._image_arrays.cache_clear()
    loader._text_arrays.cache_clear()


def _raw_baselines() -> dict:
    def csv(path):
        with gzip.open(path, "rt") as f:
            return np.loadtxt(f, delimiter=",")
    out = {
        "digits": lambda: csv(sources.digits_csv_path()),
        "gaussian_mixture": lambda: sources.make_gaussian_mixture(seed=0),
        "teacher_mlp": lambda: sources.make_teacher_mlp(seed=0),
        "python_docs": lambda: text.encode(text.python_docs_text()),
        "mnist1d": lambda: sources.read_mnist1d(),
        "fashion_mnist": lambda: sources.read_fashion_mnist(),
    }
    try:
        path = sources.mnist_5k_csv_path()
        out["mnist_5k"] = lambda: csv(path)
    except sources.DatasetUnavailableError:
        pass
    return out


def bench(name: str, data_dir: str, repeats: int, raw_fn) -> dict:
    is_text = name in loader.TEXT_DATASETS
    load = (lambda: loader.load_text_dataset(name, data_dir=data_dir)) if is_text else \
        (lambda: loader.load_image_dataset(name, data_dir=data_dir))
    t0 = time.perf_counter()
    builders.prepare_source(name, data_dir)
    prepare_s = time.perf_counter() - t0

    def cold():
        _clear_caches()
        load()
    read = _median_time(cold, repeats)
    load()
    cached = _median_time(load, repeats)
    raw = _median_time(raw_fn, max(1, repeats // 2))
    return {"dataset": name, "prepare_s": prepare_s, "read_ms": 1e3 * read,
            "cached_ms": 1e3 * cached, "raw_ms": 1e3 * raw, "read_over_raw": read / raw}


def fresh_process_ms(data_dir: str, repeats: int = 3) -> tuple[float, float]:
    code = ("from tasks.datasets import load_image_dataset; "
            f"load_image_dataset('digits', data_dir={data_dir!r})")
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    def run():
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=str(ROOT),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = _median_time(lambda: subprocess.run([sys.executable, "-c", "import jax"], check=True,
                                               env=env, stdout=subprocess.DEVNULL), repeats)
    return 1e3 * _median_time(run, repeats), 1e3 * base


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fashion", action="store_true",
                        help="include fashion_mnist (70k images; needs dataset-fashion-mnist)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_datasets.json"))
    args = parser.parse_args(argv)

    names = ["digits", "python_docs", "gaussian_mixture", "teacher_mlp", "mnist_5k", "mnist1d"]
    if args.fashion:
        names.append("fashion_mnist")
    raw_fns = _raw_baselines()
    rows = []
    with Window(idle_load=IDLE_LOAD) as window, tempfile.TemporaryDirectory() as data_dir:
        for name in names:
            if name not in raw_fns or not (name in loader.TEXT_DATASETS or loader._available(name)):
                print(f"skip {name}: source not available")
                continue
            rows.append(bench(name, data_dir, args.repeats, raw_fns[name]))
        fresh_ms, jax_only_ms = fresh_process_ms(data_dir)

    machine = window.summary()
    mark = "" if machine["quiet"] else " (BUSY)"
    header = f"{'dataset':<17}{'prepare s':>10}{'read ms':>10}{'cached ms':>10}{'raw ms':>10}{'read/raw':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['dataset']:<17}{r['prepare_s']:>10.2f}{r['read_ms']:>10.1f}{r['cached_ms']:>10.2f}"
              f"{r['raw_ms']:>10.1f}{r['read_over_raw']:>10.2f}{mark}")
    print(f"import tasks.datasets (jax + TFDS): {IMPORT_S:.2f} s")
    print(f"fresh process, load digits from prepared data_dir: {fresh_ms:.0f} ms "
          f"(python -c 'import jax' alone: {jax_only_ms:.0f} ms)")
    print(describe(machine, IDLE_LOAD))
    result = {"rows": rows, "import_tasks_datasets_s": IMPORT_S, "fresh_process_digits_ms": fresh_ms,
              "fresh_process_import_jax_ms": jax_only_ms, "repeats": args.repeats,
              "python": platform.python_version(), "machine": platform.machine(),
              "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
              "machine_summary": machine, "quiet": machine["quiet"]}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
