"""`python -m dataset_builder {build,synthesize} ...`: see `python -m dataset_builder --help`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
