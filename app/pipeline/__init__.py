"""Qt-free stages on disk arrays: read, convert, features, train, segment, mesh, export."""
