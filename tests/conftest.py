"""Shared test setup: process settings that must precede the first TensorFlow import, and the one
moto server (on loopback) that every emulated-AWS test in the session shares."""

from driftloop.components.entrypoint import configure_process

configure_process()

pytest_plugins = ("support.moto_server",)
