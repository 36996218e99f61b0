"""python -m cnnkit: the cnnkit command line."""
import sys

from .cli import main

sys.exit(main())
