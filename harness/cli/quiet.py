"""Keep library chatter (diffusers' dtype notes, Ray's start-up INFO lines) off the terminal."""

from __future__ import annotations

import logging
import os
import warnings


def quiet() -> None:
    """Offline, quiet libraries: set once by the CLI, the tests and the benchmarks."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("diffusers", "transformers", "ray", "ray.runtime_env", "ray._private"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
