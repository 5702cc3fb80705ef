from services.calendar_sync.worker import main

main()
