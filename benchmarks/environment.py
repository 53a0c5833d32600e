"""What every benchmark command does first: INFO logging with timestamps, the libraries' own
loggers quieted, and no hub access (models are built locally; nothing is downloaded)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

QUIET = ("transformers", "rerank_integrations")


def offline_logging(*, quiet: Sequence[str] = QUIET, progress_bars: bool = True) -> None:
    """Configure logging and the offline environment (``setdefault``: a variable the user set
    wins); ``quiet`` loggers only report errors; ``progress_bars=False`` hides the hub's."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not progress_bars:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
