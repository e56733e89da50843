"""`python -m services.reporting` runs one process of the reporting service;
`python -m services.reporting rebuild` rebuilds its read model from the topics."""

import sys

if sys.argv[1:2] == ["rebuild"]:
    from services.reporting.rebuild import main as rebuild

    sys.exit(rebuild(sys.argv[2:]))

from services.reporting.app import main

main()
