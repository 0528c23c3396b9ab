"""Stand-in for the Lambda Python runtime: ``python lambda_bootstrap.py <module.function>`` .

Reads the event (JSON) on stdin, calls the handler with a Lambda-shaped context, and writes one
JSON line to stdout: ``{"result": ...}`` or, as the runtime reports an unhandled exception,
``{"error": {"errorMessage", "errorType", "stackTrace"}}``. The handler's own output goes to
stderr (the function's log). The code folder is the working directory and comes first on
``sys.path``, as ``/var/task`` does in Lambda.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field


@dataclass
class LambdaContext:
    """The attributes of the runtime's context object that handlers and Powertools read."""

    function_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function"))
    function_version: str = "$LATEST"
    invoked_function_arn: str = field(default_factory=lambda: os.environ.get("DRIFTLOOP_EMULATED_FUNCTION_ARN", ""))
    memory_limit_in_mb: int = field(
        default_factory=lambda: int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    )
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    deadline_ms: float = field(
        default_factory=lambda: time.time() * 1000 + 1000 * float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))
    )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.deadline_ms - time.time() * 1000))


def main(handler_name: str) -> int:
    sys.path[0] = os.getcwd()  # the code folder, not this script's folder
    out = sys.stdout
    sys.stdout = sys.stderr  # prints and logs of the handler are the function's log, not its result
    try:
        module_name, _, function_name = handler_name.rpartition(".")
        handler = getattr(importlib.import_module(module_name.replace("/", ".")), function_name)
        result = handler(json.loads(sys.stdin.read() or "{}"), LambdaContext())
    except Exception as error:  # the runtime reports any unhandled exception as the function's error
        payload = {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "stackTrace": traceback.format_tb(error.__traceback__),
        }
        out.write(json.dumps({"error": payload}) + "\n")
        return 1
    out.write(json.dumps({"result": result}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
