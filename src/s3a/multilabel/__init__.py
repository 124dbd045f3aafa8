"""Multi-label mode (CDUL, CLIP-Decoder): multi-label classification from CLIP global and local views.

Modules (see ``MULTILABEL_SPEC.md`` and ``README.md`` beside this file):

* :mod:`.data` — dataset builders (VOC 2007/2012, COCO 2014, NUS-WIDE, real-photo mosaics, the
  generated demo set) returning the standard manifest plus the ``labels`` and ``label_set`` tables;
* :mod:`.tiles` — the 3x3 tile grid and tile embedding (one decode per image);
* :mod:`.pseudo` — the global-local pseudo-label aggregation (spec 5);
* :mod:`.labels` — the latent-label updates of gradient-alignment training, shared by every learner (spec 6);
* :mod:`.linear` — the ``linear`` learner: a logistic head on cached embeddings (spec 6);
* :mod:`.finetune`, :mod:`.imageloop`, :mod:`.train` — the image learners ``finetune`` (CLIP visual
  encoder + linear head) and ``mldecoder`` with a trainable backbone (layer decay): one DDP loop with
  latent-label updates and resume, ``python -m s3a.multilabel.imagetrain``, ``predict_finetuned`` (spec 6, 7);
* :mod:`.learners`, :mod:`.steps`, :mod:`.stages` — the workflow glue: ``multilabel.train`` -> parameters,
  one step per CDUL rule, the evaluation of a stage;
* :mod:`.metrics` — mAP, CP/CR/CF1, OP/OR/OF1, top-K P/R/F1 and the evaluation subsets (spec 9);
* :mod:`.heads` — the CLIP-Decoder head (ML-Decoder with CLIP text queries, chunked label queries),
  closed-set group decoding, patch tokens of an open_clip ViT (spec 7);
* :mod:`.headtrain` — training the head on precomputed tokens, dense and top-k prediction;
* :mod:`.losses` — the learners' network losses, the asymmetric loss and the alignment term ``L_clip``
  (spec 6, 7);
* :mod:`.supervision` — ``gt_seen`` (ZSL split, seen-label targets), ``pseudo`` (CDUL labels) and the
  ZSL/GZSL protocol metrics (spec 7, 9);
* :mod:`.openvocab` — open-vocabulary multi-label over the 20K names: per-view top-k, aggregation,
  frequency discovery, exact and WordNet-hierarchical evaluation (spec 8);
* :mod:`.discovery` — cluster-vote label discovery on tile/global views (spec 8, ``s3a.discover``);
* :mod:`.resume` — resume files of the ``linear`` and ``mldecoder`` learners.
"""
