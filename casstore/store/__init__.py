"""Modules at MLflow's ``mlflow.store`` import paths that scripts use."""
