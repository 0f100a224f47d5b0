"""The boundary: every value, file and record that enters efakit passes here.

Commands never validate on their own; they ask this package.  `values` says what a
piece of text is (a name, a finite number, an ASCII count, a host that cannot be an
option) and gives click types for it, `files` is the one reader and the one writer,
`records` checks a JSON/YAML record against its schema before anything uses it,
`archives` reads a source archive as a stream (its git tree id, the member checks)
without writing any of it to disk.
Everything here is importable inside an image (click and the standard library only).
"""
