"""S3A: Self Structural Semantic Alignment for realistic zero-shot classification.

The library holds every algorithm of the workflow; ``workflow/scripts`` only connect it to Snakemake.
"""

__version__ = "0.1.0"
