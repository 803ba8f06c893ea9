"""The UI's routes, one module per page (orchestrate, pipeline, runs), plus files, jobs (SSE) and the JSON API."""
