"""``python -m segbench``: the same command line as the ``segbench`` script."""

from segbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
