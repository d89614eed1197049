"""The application: jobs, sources, sinks, options and the `complaints` command line."""
