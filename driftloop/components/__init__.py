"""The four components. Each module exposes ``RUNNERS = {"train": ..., "serve": ...}`` taking an
``entrypoint.Invocation``, and ``main()`` for its container entrypoint."""
