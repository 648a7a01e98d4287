"""The retraining guard Lambda's asset (retrain.py, its handler)."""
