"""The host variables a program sees without any grant, apart from the rest of the defaults: the runner reads
them before it has loaded the policy machinery, to start the enclave process early (posix_shim/prestart.py)."""

# Locale, time zone and terminal shape.  HOME, USER and PATH are left out on purpose: they name the host's user
# and layout, and nothing inside the enclave can exec a PATH entry.
SAFE_ENV = ("LANG", "LANGUAGE", "LC_*", "TZ", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES",
            "PYTHONIOENCODING", "PYTHONUTF8")

__all__ = ["SAFE_ENV"]
