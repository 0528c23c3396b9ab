"""Parameter and object stores: one interface each, local and AWS implementations."""

from driftloop.stores.objects import LocalObjectStore, ObjectNotFound, ObjectStore, S3ObjectStore
from driftloop.stores.params import (
    ParameterNotFound,
    ParameterStore,
    ParameterVersion,
    SqliteParameterStore,
    SsmParameterStore,
)

__all__ = [
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "ParameterNotFound",
    "ParameterStore",
    "ParameterVersion",
    "S3ObjectStore",
    "SqliteParameterStore",
    "SsmParameterStore",
]
