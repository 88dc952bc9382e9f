"""What fit prints besides the progress bar: camlit's own messages on stderr, and Lightning's
start-up lines held back until training starts, without its advert."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.pytorch import Callback, LightningModule, Trainer

# Where Lightning says the seed it set and the devices it found, as a run starts.
STARTUP_LOGGERS = ("lightning.fabric.utilities.seed", "lightning.pytorch.utilities.rank_zero")


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at each message, not the one there when it was made
    (an embedding program, or a test's capture, may replace it between runs)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


# Lightning's lines that camlit does without, by logger: the tip to install its cloud logger,
# printed on every run (and above an error line), and "[rank: 0] Received SIGTERM: 15" above
# camlit's own line saying what the stop saved.
UNWANTED = {
    "lightning.pytorch.utilities.rank_zero": "litlogger",
    "lightning.pytorch.trainer.connectors.signal_connector": "Received SIGTERM",
}


class Without(logging.Filter):
    """Drops the records whose message holds `text`."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class StartupLines(logging.Filter):
    """Holds Lightning's start-up lines ("Seed set to 0", "GPU available: ...") until training
    starts: a mistake found in the data before then ends the run as the one `error:` line it is."""

    def __init__(self):
        super().__init__()
        self.held: list[logging.LogRecord] | None = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.held is None or record.levelno > logging.INFO:
            return True
        self.held.append(record)
        return False

    def release(self) -> None:
        held, self.held = self.held or [], None
        for record in held:
            logging.getLogger(record.name).handle(record)


class ShowStartupLines(Callback):
    """Prints the held start-up lines once the data is checked and the run begins."""

    def __init__(self, lines: StartupLines):
        self.lines = lines

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.lines.release()


@contextmanager
def fit_messages() -> Iterator[StartupLines]:
    """camlit's progress and skip messages on stderr, as Lightning shows its own; Lightning's
    start-up lines held until training starts; no advert."""
    logger = logging.getLogger("camlit")
    if not logger.handlers:
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    for name, text in UNWANTED.items():
        lightning = logging.getLogger(name)
        if not any(isinstance(f, Without) and f.text == text for f in lightning.filters):
            lightning.addFilter(Without(text))
    lines = StartupLines()
    for name in STARTUP_LOGGERS:
        logging.getLogger(name).addFilter(lines)
    try:
        yield lines
    finally:
        for name in STARTUP_LOGGERS:
            logging.getLogger(name).removeFilter(lines)
