from arbstr.cli import main

main()
