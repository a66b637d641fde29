from facefix.cli import main

main()
