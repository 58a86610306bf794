import sys

from pycemaker.cli import main

sys.exit(main())
