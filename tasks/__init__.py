from tasks.base import Batch, Datasets, Params, Split, Task, TaskFamily

__all__ = ["Batch", "Datasets", "Params", "Split", "Task", "TaskFamily"]
