"""`python -m services.routing` runs one process of the routing service;
`python -m services.routing load-taxonomy FILE` loads a province's taxonomy file."""

import sys

if sys.argv[1:2] == ["load-taxonomy"]:
    from services.routing.taxonomy_cli import main as load_taxonomy

    sys.exit(load_taxonomy(sys.argv[2:]))

from services.routing.app import main

main()
