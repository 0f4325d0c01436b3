"""``evaluate``: MLflow's default evaluator for classifiers and regressors on tabular data.

``casstore.evaluate(model_uri, df, targets="label", model_type="classifier")`` predicts on
the rows of ``df``, computes the metrics MLflow's default evaluator computes, under the same
names and with the same scikit-learn functions, and logs them (step 0) to the active run, or
to a run of its own when none is active, with the evaluation data as a dataset input.

Classifier (``score`` when the model is a scikit-learn estimator; ``log_loss``, ``roc_auc``
and, for two classes, ``precision_recall_auc`` when it has ``predict_proba``):
two classes: ``true_negatives``, ``false_positives``, ``false_negatives``, ``true_positives``,
``example_count``, ``accuracy_score``, ``recall_score``, ``precision_score``, ``f1_score``
(of ``pos_label``, the greater label unless ``evaluator_config`` names one); more classes:
the same scores averaged (``average``, ``"weighted"`` by default) and a one-vs-rest ``roc_auc``.
Regressor: ``example_count``, ``mean_absolute_error``, ``mean_squared_error``,
``root_mean_squared_error``, ``sum_on_target``, ``mean_on_target``, ``r2_score``,
``max_error``, ``mean_absolute_percentage_error`` (and ``score``).

What MLflow adds beyond these metrics is refused with a message rather than skipped: plots
and other evaluation artifacts are not produced (``result.artifacts`` is empty), and custom
metrics, custom artifacts, other evaluators and model types (text, question answering) are
not supported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from casstore.exceptions import InvalidInputError

__all__ = ["EvaluationResult", "evaluate"]

#: ``evaluator_config`` keys of MLflow's default evaluator that would change what it computes
#: or writes, beyond what casstore does (the keys casstore honours are pos_label, label_list,
#: average and metric_prefix; those for explanations and plots change nothing here, as in
#: MLflow without SHAP, and like MLflow, casstore ignores keys it does not know)
_REFUSED_CONFIG = {
    "sample_weights": "compute weighted metrics with scikit-learn and log them with log_metric",
    "col_mapping": "custom metrics are not supported; log your own with log_metric",
    "eval_results_path": "write the predictions yourself and log them with log_table or log_artifact",
    "eval_results_mode": "write the predictions yourself and log them with log_table or log_artifact",
}
_SKLEARN_LOADERS = ("casstore.sklearn", "mlflow.sklearn")


class EvaluationResult:
    """What ``evaluate`` computed: ``metrics`` (name to value, as logged), ``artifacts``
    (always empty: casstore draws no evaluation plots) and the ``run_id`` they were logged to."""

    def __init__(self, metrics: dict[str, Any], artifacts: dict[str, Any], run_id: str) -> None:
        self.metrics = metrics
        self.artifacts = artifacts
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"<EvaluationResult run_id={self.run_id!r} metrics={sorted(self.metrics)}>"


def _refuse(what: str, do: str) -> None:
    raise InvalidInputError(f"evaluate: {what} is not supported by casstore; {do}")


def _check_arguments(
    model_type: str | None, evaluators: str | Sequence[str] | None, evaluator_config: dict[str, Any] | None,
    given: dict[str, Any],
) -> dict[str, Any]:
    if model_type not in ("classifier", "regressor"):
        raise InvalidInputError(
            f"evaluate: model_type {model_type!r} is not supported: casstore evaluates model_type='classifier' or "
            "'regressor' (MLflow's default evaluator for tabular models); for other model types use MLflow"
        )
    names = [evaluators] if isinstance(evaluators, str) else list(evaluators or ["default"])
    if names != ["default"]:
        _refuse(f"evaluators={evaluators!r}", "leave evaluators out (or 'default') for the default metrics")
    for name, value in given.items():
        if value is not None:
            _refuse(f"{name}=", "compute such results from result.metrics or the model's predictions and log them "
                    "with log_metric / log_artifact in the same run")
    config = dict(evaluator_config or {})
    for key in sorted(set(config) & set(_REFUSED_CONFIG)):
        _refuse(f"evaluator_config[{key!r}]", _REFUSED_CONFIG[key])
    return config


def _split(data: Any, targets: Any, predictions: str | None, feature_names: list[str] | None) -> tuple[Any, Any, Any, Any]:
    """(features, labels, given predictions or None, the dataset to record) of ``data``."""
    import numpy as np
    import pandas as pd

    from casstore import data as datasets

    given_dataset = data if isinstance(data, datasets.PandasDataset) else None
    if isinstance(data, datasets.PandasDataset):
        targets = targets if targets is not None else data.targets
        predictions = predictions if predictions is not None else data.predictions
        data = data.df
    if isinstance(data, pd.DataFrame):
        if not isinstance(targets, str) or targets not in data.columns:
            raise InvalidInputError(
                f"evaluate: targets= must name the label column of the DataFrame (got {targets!r}; its columns are "
                f"{list(data.columns)})"
            )
        if predictions is not None and predictions not in data.columns:
            raise InvalidInputError(f"evaluate: predictions={predictions!r} is not a column of the DataFrame")
        drop = [targets] + ([predictions] if predictions is not None else [])
        features = data.drop(columns=drop)
        if feature_names is not None:
            features = features[list(feature_names)]
        given = data[predictions].to_numpy() if predictions is not None else None
        recorded = given_dataset or datasets.from_pandas(data, targets=targets)
        return features, data[targets].to_numpy(), given, recorded
    if isinstance(data, (np.ndarray, list)):
        if targets is None or isinstance(targets, str):
            raise InvalidInputError("evaluate: with an array as data, targets= must be the array of labels")
        if predictions is not None:
            _refuse("predictions= with an array as data", "give a DataFrame holding a predictions column")
        features = np.asarray(data)
        labels = np.asarray(targets)
        if feature_names is not None:
            features = pd.DataFrame(features, columns=list(feature_names))
        return features, labels, None, datasets.from_numpy(np.asarray(data), targets=labels)
    raise InvalidInputError(
        f"evaluate: data must be a pandas DataFrame, a dataset of casstore.data.from_pandas, or a numpy array "
        f"(got {type(data).__name__})"
    )


def _predictors(model: Any) -> tuple[Callable[[Any], Any], Any]:
    """(predict, the scikit-learn estimator under the model or None) of a model argument."""
    from casstore.models.pyfunc import FLAVOR_NAME, PyFuncModel

    if isinstance(model, (str, os.PathLike)):
        from casstore.pyfunc import load_model

        model = load_model(model)
    if isinstance(model, PyFuncModel):
        loader = model.metadata.flavors.get(FLAVOR_NAME, {}).get("loader_module")
        raw = model.get_raw_model() if loader in _SKLEARN_LOADERS else None
        return model.predict, raw
    if callable(model):
        return model, None
    raise InvalidInputError(
        f"evaluate: model must be a model URI, a model from casstore.pyfunc.load_model, or a function of the "
        f"features (got {type(model).__name__})"
    )


def _ignoring_value_errors(compute: Callable[[], Any]) -> Any:
    """A metric, or None where scikit-learn cannot compute it on these labels (one class
    only, say), which MLflow's evaluator leaves out as well."""
    try:
        return compute()
    except ValueError:
        return None


def _classifier_metrics(y: Any, y_pred: Any, proba: Any, config: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from sklearn import metrics as skm

    labels = np.array(config["label_list"]) if config.get("label_list") is not None else np.unique(np.concatenate([y, y_pred]))
    if len(labels) < 2:
        raise InvalidInputError(
            f"evaluate: a classifier's evaluation data must hold at least two labels, found {len(labels)}; give them "
            "all with evaluator_config={'label_list': [...]}"
        )
    labels.sort()
    out: dict[str, Any] = {}
    if len(labels) == 2:
        pos_label = config.get("pos_label")
        pos_index = int(np.where(labels == pos_label)[0][0]) if pos_label in labels else 1
        if pos_label is None:
            pos_label = labels[-1]
        elif pos_label in labels:
            labels = np.append(np.delete(labels, np.where(labels == pos_label)), pos_label)
        tn, fp, fn, tp = skm.confusion_matrix(y, y_pred, labels=labels).ravel()
        out.update(true_negatives=tn, false_positives=fp, false_negatives=fn, true_positives=tp)
        average: str | None = "binary"
    else:
        pos_label, average = None, config.get("average", "weighted")
    out.update(
        example_count=len(y),
        accuracy_score=skm.accuracy_score(y, y_pred),
        recall_score=skm.recall_score(y, y_pred, average=average, pos_label=pos_label),
        precision_score=skm.precision_score(y, y_pred, average=average, pos_label=pos_label),
        f1_score=skm.f1_score(y, y_pred, average=average, pos_label=pos_label),
    )
    if proba is not None:
        out["log_loss"] = _ignoring_value_errors(lambda: skm.log_loss(y, proba, labels=np.sort(labels)))  # proba's columns
        if len(labels) == 2:
            positive = proba[:, pos_index]
            out["roc_auc"] = _ignoring_value_errors(lambda: skm.roc_auc_score(np.asarray(y) == pos_label, positive))
            out["precision_recall_auc"] = _ignoring_value_errors(
                lambda: skm.average_precision_score(y, positive, pos_label=pos_label))
        elif average in ("macro", "weighted"):
            out["roc_auc"] = skm.roc_auc_score(y, proba, average=average, multi_class="ovr")
    return {k: v for k, v in out.items() if v is not None}


def _regressor_metrics(y: Any, y_pred: Any) -> dict[str, Any]:
    import numpy as np
    from sklearn import metrics as skm

    total = sum(y)
    mse = skm.mean_squared_error(y, y_pred)
    return {
        "example_count": len(y),
        "mean_absolute_error": skm.mean_absolute_error(y, y_pred),
        "mean_squared_error": mse,
        "root_mean_squared_error": float(np.sqrt(mse)),
        "sum_on_target": total,
        "mean_on_target": total / len(y),
        "r2_score": skm.r2_score(y, y_pred),
        "max_error": skm.max_error(y, y_pred),
        "mean_absolute_percentage_error": skm.mean_absolute_percentage_error(y, y_pred),
    }


def evaluate(
    model: Any = None,
    data: Any = None,
    *,
    model_type: str | None = None,
    targets: Any = None,
    predictions: str | None = None,
    dataset_path: str | None = None,
    feature_names: list[str] | None = None,
    evaluators: str | Sequence[str] | None = None,
    evaluator_config: dict[str, Any] | None = None,
    extra_metrics: list[Any] | None = None,
    custom_artifacts: list[Any] | None = None,
    env_manager: str = "local",
    model_config: dict[str, Any] | None = None,
    inference_params: dict[str, Any] | None = None,
    model_id: str | None = None,
) -> EvaluationResult:
    """Evaluate a classifier or regressor on ``data`` and log MLflow's default metrics.

    ``model`` is a model URI (``runs:/...``, ``models:/...``), a model from
    ``casstore.pyfunc.load_model``, a function of the features, or None with
    ``predictions`` naming a column of ``data`` that holds them. ``targets`` names the
    label column (or, for an array, is the labels)."""
    config = _check_arguments(model_type, evaluators, evaluator_config, {
        "extra_metrics": extra_metrics, "custom_artifacts": custom_artifacts, "dataset_path": dataset_path,
        "model_config": model_config, "inference_params": inference_params, "model_id": model_id,
    })
    if env_manager != "local":
        _refuse(f"env_manager={env_manager!r}", "evaluate in an environment holding the model's requirements")
    features, y, given, dataset = _split(data, targets, predictions, feature_names)
    if model is None and given is None:
        raise InvalidInputError("evaluate: give a model, or predictions= naming the column that holds them")
    predict, raw = _predictors(model) if model is not None else (None, None)

    from casstore.models import _context

    prefix = config.get("metric_prefix") or ""
    with _context.logging_run() as run:  # the active run, or one of its own (FAILED if this raises)
        run.log_input({**dataset.to_dict(), "context": prefix, "tags": {}})
        y_pred = given if predict is None else predict(features)
        y_pred = y_pred.to_numpy() if hasattr(y_pred, "to_numpy") else y_pred
        metrics: dict[str, Any] = {}
        if raw is not None and hasattr(raw, "score"):
            metrics["score"] = raw.score(features, y)
        if model_type == "classifier":
            proba = raw.predict_proba(features) if raw is not None and hasattr(raw, "predict_proba") else None
            metrics.update(_classifier_metrics(y, y_pred, proba, config))
        else:
            metrics.update(_regressor_metrics(y, y_pred))
        metrics = {f"{prefix}{k}": v for k, v in metrics.items()}
        now = int(time.time() * 1000)
        run.log_batch(metrics=[(k, float(v), 0, now) for k, v in metrics.items()])  # MLflow's: step 0, one time
    return EvaluationResult(metrics, {}, run.run_id)
