"""Multi-label datasets (spec 2), shared by every method: :mod:`.registry` (``build_multilabel``,
the builder of each ``kind``), :mod:`.tables` (the ``labels`` and ``label_set`` tables, label
matrices, prediction and refined-label tables), :mod:`.benchmarks` (VOC 2007/2012, COCO 2014,
NUS-WIDE) and :mod:`.mosaic` (real-photo mosaics and the generated demo set).
"""
