from unlearnkit.service.cli import main

main()
