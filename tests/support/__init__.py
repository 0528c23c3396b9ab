"""Test helpers shared by several suites (import as ``support.<module>``: tests/ is on sys.path)."""
