"""The daemon: configuration, workers, the HTTP API, the reloader and file watcher, metrics."""
