"""orket-pipeline: telemetry beside every LLM test run."""
