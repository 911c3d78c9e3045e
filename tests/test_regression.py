"""The regression suite: one reference and one candidate test per CT volume.

``pytest --benchmark-only`` runs exactly these; they are the package's own
(:mod:`segbench.suite`), so a user's suite file is this same import line.
"""

from segbench.suite import test_candidate, test_reference

__all__ = ["test_candidate", "test_reference"]
