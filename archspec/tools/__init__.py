"""Tools over the backend: timing against the reference (`bench`), a training loop (`train`), and the
mutation fuzzer of the language (`fuzz`)."""
