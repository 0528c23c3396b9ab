"""Shared test setup: process settings that must precede the first TensorFlow import."""

from driftloop.components.entrypoint import configure_process

configure_process()
