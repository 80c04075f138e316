"""Helpers the tests share: factories, simulators of the outside edge, server processes, waits."""
