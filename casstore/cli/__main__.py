from casstore.cli import main

main()
