import sys

from mcq.cli import main

sys.exit(main())
