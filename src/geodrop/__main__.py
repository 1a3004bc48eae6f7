import sys

from geodrop.cli import main

sys.exit(main())
