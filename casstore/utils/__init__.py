"""Modules at MLflow's ``mlflow.utils`` import paths that scripts use."""
