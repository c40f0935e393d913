"""Job entry points for `ray job submit` (python -m trainables.train / evaluate / sweep), the Ray
Tune sweep and its report, and the quickstart job behind `make run`."""
