"""``python -m tclsta <stage> ...``"""

import sys

from tclsta.cli import main

sys.exit(main())
