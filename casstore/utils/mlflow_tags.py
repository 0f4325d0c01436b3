"""MLflow's ``mlflow.utils.mlflow_tags`` import path: the names of the system tags a run
carries, for filters such as ``f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_id}'"``.

casstore's own modules name these tags through the constants here, never as literals."""

MLFLOW_RUN_NAME = "mlflow.runName"
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"
MLFLOW_RUN_NOTE = "mlflow.note.content"
MLFLOW_USER = "mlflow.user"
MLFLOW_SOURCE_NAME = "mlflow.source.name"
MLFLOW_SOURCE_TYPE = "mlflow.source.type"
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_AUTOLOGGING = "mlflow.autologging"
MLFLOW_LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"
MLFLOW_LOGGED_IMAGES = "mlflow.loggedImages"
MLFLOW_DATASET_CONTEXT = "mlflow.data.context"

__all__ = ["MLFLOW_RUN_NAME", "MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_NOTE", "MLFLOW_USER", "MLFLOW_SOURCE_NAME",
           "MLFLOW_SOURCE_TYPE", "MLFLOW_GIT_COMMIT", "MLFLOW_AUTOLOGGING", "MLFLOW_LOGGED_ARTIFACTS",
           "MLFLOW_LOGGED_IMAGES", "MLFLOW_DATASET_CONTEXT"]
