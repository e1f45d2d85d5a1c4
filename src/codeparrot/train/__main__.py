"""`python -m codeparrot.train --settings train_settings.json`: one training process (accelerate
launch starts one per GPU, or one CPU process)."""

import argparse

from codeparrot.logs import process_logging
from codeparrot.train.loop import train
from codeparrot.train.settings import SETTINGS_FILE, read_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help=f"JSON file of TrainSettings ({SETTINGS_FILE})")
    args = parser.parse_args(argv)
    process_logging()
    train(read_settings(args.settings))


if __name__ == "__main__":
    main()
