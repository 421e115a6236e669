"""Built-in clusterfw plugins (plugins/estimators)."""
