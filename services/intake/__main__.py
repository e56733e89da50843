"""`python -m services.intake` runs one process of the intake service;
`python -m services.intake anonymise [--dry-run]` runs the retention job once."""

import sys

if sys.argv[1:2] == ["anonymise"]:
    from services.intake.anonymise import main as anonymise

    anonymise(sys.argv[2:])
else:
    from services.intake.app import main

    main()
