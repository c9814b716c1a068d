import sys

from kitchen.cli.main import main

sys.exit(main())
