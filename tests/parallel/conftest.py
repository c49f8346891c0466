# _worker.py is a subprocess entry point (it reads sys.argv at import) and _cases.py its helper
# module: neither is a test module, and --doctest-modules must not import them.
collect_ignore = ["_worker.py", "_cases.py"]
