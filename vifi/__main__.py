"""`python -m vifi` / `torchrun -m vifi`: the same CLI as the `vifi` console script."""

from vifi.cli.app import main

if __name__ == "__main__":
    main()
