"""``python -m foundation.devstack``: the local stack (see foundation.devstack.runner)."""

from foundation.devstack.runner import main

if __name__ == "__main__":
    main()
