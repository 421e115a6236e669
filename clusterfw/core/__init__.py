"""The clusterfw core: hookspecs, plugin manager, data model, schema, I/O, pipeline, CLI."""
