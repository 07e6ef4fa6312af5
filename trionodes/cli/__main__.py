"""``python -m trionodes.cli``: the ``trionodes`` command without its console script."""

from trionodes.cli import main

if __name__ == "__main__":
    main()
