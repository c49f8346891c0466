"""The paper's experiments (theory.md §6): the MNIST study, the two-moons study, and the
report that ``fracsgd reproduce`` writes. This is the only place where the paper's protocol
lives; everything below it is general."""

from fracsgd.experiments import mnist, moons, report
from fracsgd.experiments._store import StageError, Store, fingerprint

__all__ = ["StageError", "Store", "fingerprint", "mnist", "moons", "report"]
