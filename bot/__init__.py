"""The assistant's transports (Telegram, web chat) and the conversation core."""

import sys

# The bot runs its model on the CPU and never compiles GPU kernels, but importing torchvision
# (which timm needs) makes torch look for Triton, whose import alone costs ~75 MB of resident
# memory (docs/performance.md). None in sys.modules makes Python (and torch's checks) treat it
# as not installed.
sys.modules.setdefault("triton", None)
