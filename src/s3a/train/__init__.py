"""Teacher-student self-training (spec 6): ``python -m s3a.train``."""
