"""Final test loss of one suite task per seed under several checkpoints (the divergence check)."""
import sys
import numpy as np
from eval.suites import get_suite
from eval.runner import run_method
from eval.methods import from_checkpoint

suite, task_name = sys.argv[1], sys.argv[2]
st = next(t for t in get_suite(suite).resolve() if t.name == task_name)
task = st.build()
for path in sys.argv[3:]:
    run = run_method(task, from_checkpoint(path), st.num_steps, seeds=(0, 1, 2))
    print(path, [(c.test[-1] if hasattr(c,'test') else c) for c in run.selected])
