import sys

from fer_cli.main import main

sys.exit(main())
