"""Fine-tuning the trunk: trunk + head trained end to end from sequence (``finetune``), and
small backbones pretrained from scratch with the same machinery (``backbone pretrain``)."""
