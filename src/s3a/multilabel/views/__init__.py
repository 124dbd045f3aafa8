"""The global and local views of an image (spec 4), shared by CDUL's pseudo-labels and the open
vocabulary: :mod:`.tiles` cuts and embeds the g x g tile grid (rule ``embed_tiles``), :mod:`.tables`
stores the tiles and pairs them with the global embeddings by image id (no torch).
"""
