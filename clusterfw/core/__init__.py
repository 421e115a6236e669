"""The clusterfw core: hook specifications, plugin manager, data model, schema, I/O, pipeline, CLI."""
