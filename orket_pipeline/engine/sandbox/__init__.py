"""Running generated code away from the engine: the child process and its harness."""
