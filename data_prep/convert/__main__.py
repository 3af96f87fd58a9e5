"""`python -m data_prep.convert`: the command line (data_prep/convert_cli.py) of the converter
(data_prep/convert/__init__.py). A module of its own, so that the converter never imports its
command line and is never loaded twice (as `__main__` and as `data_prep.convert`)."""

import sys

from data_prep.convert_cli import main

if __name__ == "__main__":
    sys.exit(main(["python -m data_prep.convert", *sys.argv[1:]]))
