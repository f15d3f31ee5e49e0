"""`python -m facelatent.cli`: the same as the `facelatent` command."""

import sys

from facelatent.cli import main

sys.exit(main())
