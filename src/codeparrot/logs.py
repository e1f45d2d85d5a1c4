"""Rule scripts write what they print to their Snakemake log file and still show it live."""

import contextlib
import logging
import sys
import traceback
from pathlib import Path


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()

    def isatty(self):
        return False


LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


def process_logging() -> None:
    """Logging of a process `accelerate launch` starts: the project's messages, the libraries' at
    warning level only (accelerate logs every save)."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("codeparrot").setLevel(logging.INFO)


class UserError(RuntimeError):
    """An error whose message says what to do: a rule shows it as one line, without a traceback."""


@contextlib.contextmanager
def redirect_to_log(path: str):
    """Tee stdout and stderr (progress bars, logging) into `path` for the duration of a rule.

    A UserError ends the job with its message alone, in the log and on stderr."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as log:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
        logging.basicConfig(
            level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True
        )
        try:
            yield
        except UserError as error:
            log.write(f"ERROR: {error}\n")
            raise SystemExit(f"ERROR: {error}") from None
        except BaseException:
            # Keep the reason in the rule's log file, not only in Snakemake's terminal output.
            traceback.print_exc(file=log)
            raise
        finally:
            sys.stdout, sys.stderr = out, err
