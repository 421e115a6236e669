"""Training-set fast paths: detector fields, mass cutouts and classifier candidates in shards."""
