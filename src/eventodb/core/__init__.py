"""Pure rules shared by every backend and endpoint: no I/O lives here."""
