"""Built-in clusterfw plugins (plugins)."""
