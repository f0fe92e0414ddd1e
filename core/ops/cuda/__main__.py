"""`python -m core.ops.cuda --arch 9.0`: compile and load the CUDA ops (see build.main)."""

import sys

from core.ops.cuda.build import main

sys.exit(main())
