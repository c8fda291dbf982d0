"""Configuration as code: the apply document (``document``, ``nodes``, ``schedulespec``,
``templatespec``), its plan against the server's objects (``plan``), applying it in one
transaction (``run``, with its writes built in ``batch``), the report (``report``) and
the export (``export``, ``exportform``).

One implementation for ``POST /api/v1/apply``, ``GET /api/v1/export`` and so for
``jobyard apply`` / ``jobyard export``, which only read files and push packages.
"""
