import sys

from flashinfer_cy.cli import main

sys.exit(main())
