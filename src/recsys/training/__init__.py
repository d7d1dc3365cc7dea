"""Lightning glue: the training module, callbacks and DDP launch helpers."""
