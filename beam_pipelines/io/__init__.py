"""Sources and sinks: files now; PostgreSQL, Redis and streams build on the same shapes."""
