"""`python -m splitbrain ...`: the same as the `splitbrain` console script."""

from .cli import main

if __name__ == "__main__":
    main()
