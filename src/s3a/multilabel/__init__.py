"""Multi-label mode (MULTILABEL_SPEC.md): several names per image from CLIP global and local views.

One sub-package per method, on shared modules (the map and the "where is ...?" table are in
``README.md`` beside this file):

* shared: :mod:`.data` (datasets and label tables, spec 2), :mod:`.classifier` (the label text
  classifier, spec 3), :mod:`.views` (tiles, spec 4), :mod:`.aggregate` (the global-local
  aggregation, spec 5), :mod:`.losses`, :mod:`.metrics` (spec 9), :mod:`.report`;
* the methods, which import only the shared modules: :mod:`.cdul` (CDUL pseudo-labels, label
  updates, the linear learner; spec 5-6), :mod:`.decoder` (the CLIP-Decoder head, its tokens,
  training and the ZSL/GZSL protocol; spec 7), :mod:`.openvocab` (open-vocabulary multi-label over
  the S3A vocabulary; spec 8);
* above them: :mod:`.imagetrain` (the image learners, ``python -m s3a.multilabel.imagetrain``),
  :mod:`.learners` (config -> settings) and :mod:`.evaluate` (the rows of one stage).
"""
