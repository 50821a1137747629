import sys

from jaxdyn.cli.app import main

sys.exit(main())
