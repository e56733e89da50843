from services.tracking.app import main

main()
