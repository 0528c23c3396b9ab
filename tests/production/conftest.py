"""Production-mode tests run on both object stores: the local folder and S3 on a moto server."""

from stores.conftest import objects  # noqa: F401
