"""Photo intake, quality checks, the classifier and its training."""

import os

# OpenMP threads that finish their share of an operator sleep instead of spinning for the next
# one. Spinning wins a little on an idle machine, but where the model shares the CPUs (the bot's
# event loop and photo decoding, other processes) spinning threads wait on descheduled ones:
# on a busy 2-core machine throughput fell 2-10x with spinning (docs/performance.md). Read by
# libgomp when torch is first imported, hence here; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
