"""Schemathesis hooks for the Kubepredict API (pytest fuzz test and ``make fuzz``: SCHEMATHESIS_HOOKS=tests.fuzz_hooks).

Upload bodies are ``text/csv``: a generated string is sent as it is, like ``text/plain``.
"""

import schemathesis

schemathesis.serializer.alias("text/csv", "text/plain")
