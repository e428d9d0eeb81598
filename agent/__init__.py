"""ragflow-backup's agent side: configuration, event sources, scheduler and the command line."""
