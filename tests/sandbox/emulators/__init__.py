"""Our own emulators, one file per provider.

Contract of an emulator module ``tests/sandbox/emulators/<provider>.py``:

* ``make_server(host, port, provision_seconds=0.0)`` returns a started-able
  ``http.server.ThreadingHTTPServer`` speaking plain HTTP/1.1. TLS, latency, faults and request
  counting live in the sandbox proxy in front of it, never in the emulator.
* ``operation(method, path) -> str`` names the API operation of a request (e.g.
  ``"virtualMachines.createOrUpdate"``); the proxy counts requests by it.
* Absolute URLs in responses (operation polling links, pagination links) are built from the
  request's ``Host`` header and ``X-Forwarded-Proto`` (when absent: ``https`` if the connection
  itself is TLS, as in the in-process test fixture ``serve`` of tests/sandbox/tests/conftest.py, else ``http``).
* ``GET /_sandbox/health`` -> 200; ``GET /_sandbox/state`` -> 200 JSON object mapping a resource type
  to the list of ids of its live resources (seed data such as sizes or images excluded);
  ``POST /_sandbox/reset`` forgets every resource.
* ``python -m tests.sandbox.emulators.<provider> --host H --port P [--provision-seconds N]`` serves until
  killed.
"""
