"""The recsys model artifact (the bundle), where it comes from (a checkpoint or a registered
MLflow version), where it goes (the BentoML model store), and how it answers (`recommend`)."""
