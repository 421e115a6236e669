"""Built-in clusterfw plugins (plugins/combiners)."""
