"""Files the zoo writes safely: `atomic` writes (temporary file, rename), `locks` (one writer at a time), `cache`
(where the caches live) and `hashing` (a file's sha256)."""
