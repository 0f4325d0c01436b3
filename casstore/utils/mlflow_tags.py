"""MLflow's ``mlflow.utils.mlflow_tags`` import path: the names of the system tags a run
carries, for filters such as ``f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_id}'"``."""

MLFLOW_RUN_NAME = "mlflow.runName"
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"
MLFLOW_RUN_NOTE = "mlflow.note.content"
MLFLOW_USER = "mlflow.user"
MLFLOW_SOURCE_NAME = "mlflow.source.name"
MLFLOW_SOURCE_TYPE = "mlflow.source.type"
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"

__all__ = ["MLFLOW_RUN_NAME", "MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_NOTE", "MLFLOW_USER", "MLFLOW_SOURCE_NAME",
           "MLFLOW_SOURCE_TYPE", "MLFLOW_GIT_COMMIT"]
