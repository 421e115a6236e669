"""Built-in clusterfw plugins (plugins/finders)."""
