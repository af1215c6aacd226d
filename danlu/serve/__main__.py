from danlu.serve.commands import main

main()
