"""Autologging for scikit-learn: ``casstore.sklearn.autolog()`` (and ``casstore.autolog()``).

While it is on, the outermost ``fit`` of any scikit-learn estimator (a pipeline, a search)
records, in the active run or in a run of its own that ends with the fit (as MLflow):

- params: ``get_params(deep=True)``; tags ``estimator_name`` and ``estimator_class`` (and
  ``mlflow.autologging`` ``sklearn`` on the runs autologging starts);
- training metrics on the data it was fit on: ``training_score`` and, for classifiers,
  ``training_{accuracy,precision,recall,f1}_score``, ``training_log_loss``,
  ``training_roc_auc``; for regressors ``training_{mean_squared_error,
  root_mean_squared_error, mean_absolute_error, r2_score}``;
- the fitted model as ``model`` (signature inferred from the first rows unless
  ``log_model_signatures=False``; the input example with ``log_input_examples=True``);
- the training data as a dataset input (context ``train``) with ``log_datasets``;
- ``estimator.html`` and, for classifiers (with matplotlib), ``training_confusion_matrix.png``
  and, for two classes, ``training_roc_curve.png`` and ``training_precision_recall_curve.png``;
- for a search (``GridSearchCV``, ``RandomizedSearchCV``): ``best_<param>`` params,
  ``best_cv_score``, the best estimator as ``best_estimator``, ``cv_results.csv``, and one
  child run per candidate for the ``max_tuning_runs`` best (all with ``None``).

``disable=True`` restores every patched ``fit``.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Number
from typing import Any

from casstore.exceptions import CasstoreError, InvalidInputError
from casstore.utils.mlflow_tags import MLFLOW_AUTOLOGGING, MLFLOW_PARENT_RUN_ID

__all__ = ["autolog"]

_FIT_METHODS = ("fit", "fit_transform", "fit_predict")
_state = threading.local()
_lock = threading.Lock()


@dataclass
class _Config:
    log_input_examples: bool = False
    log_model_signatures: bool = True
    log_models: bool = True
    log_datasets: bool = True
    max_tuning_runs: int | None = 5
    registered_model_name: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    serialization_format: str = "cloudpickle"
    #: the flavor's ``log_model`` (``casstore.sklearn.log_model``), handed in by it
    log_model: Callable[..., Any] | None = None


_config: _Config | None = None
#: (class, method name) -> the original attribute of that class
_patched: dict[tuple[type, str], Any] = {}


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    max_tuning_runs: int | None = 5,
    log_post_training_metrics: bool = True,
    serialization_format: str = "cloudpickle",
    registered_model_name: str | None = None,
    pos_label: Any = None,
    extra_tags: dict[str, str] | None = None,
    log_model: Callable[..., Any] | None = None,
) -> None:
    """Turn scikit-learn autologging on (or off with ``disable=True``); see the module docstring.
    ``log_model`` is the flavor's, which ``casstore.sklearn.autolog`` hands in."""
    global _config
    with _lock:
        if disable:
            _unpatch()
            _config = None
            return
        if exclusive:
            raise InvalidInputError("autolog(exclusive=True) is not supported: casstore logs into the active run")
        if max_tuning_runs is not None and (not isinstance(max_tuning_runs, int) or max_tuning_runs < 0):
            raise InvalidInputError(f"max_tuning_runs must be a non-negative integer or None, got {max_tuning_runs!r}")
        _config = _Config(log_input_examples, log_model_signatures, log_models, log_datasets, max_tuning_runs,
                          registered_model_name, {str(k): str(v) for k, v in (extra_tags or {}).items()},
                          serialization_format, log_model)
        if not _patched:
            _patch()


def _estimator_classes() -> list[type]:
    try:
        from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
        from sklearn.pipeline import Pipeline
        from sklearn.utils import all_estimators
    except ImportError as e:
        raise InvalidInputError("sklearn autologging needs scikit-learn: pip install 'casstore[sklearn]'") from e
    classes = {cls for _, cls in all_estimators()}
    classes |= {Pipeline, GridSearchCV, RandomizedSearchCV}
    return sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _patch() -> None:
    """Wrap each fit method where it is defined (``GridSearchCV.fit`` is ``BaseSearchCV``'s)."""
    for cls in _estimator_classes():
        for name in _FIT_METHODS:
            owner = next((c for c in cls.__mro__ if name in c.__dict__), None)
            if owner is None or owner is object or (owner, name) in _patched:
                continue
            original = owner.__dict__[name]
            if not callable(original):
                continue
            _patched[(owner, name)] = original
            setattr(owner, name, _wrap(original))


def _unpatch() -> None:
    for (cls, name), original in _patched.items():
        setattr(cls, name, original)
    _patched.clear()


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = _config
        if config is None or getattr(_state, "active", False):
            return original(self, *args, **kwargs)  # a fit inside a logged fit: the outer one logs
        _state.active = True
        try:
            return _logged_fit(config, original, self, args, kwargs)
        finally:
            _state.active = False

    return fit


def _logged_fit(config: _Config, original: Callable[..., Any], estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from casstore.tracking import fluent

    X = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    current = fluent.active_run()
    own = current is None
    run = current or fluent.start_run(tags={AUTOLOGGING_TAG: "sklearn"})
    client = fluent.active_client()
    rid = run.info.run_id

    def before() -> None:
        for k, v in {**_tags(estimator), **config.extra_tags}.items():
            client.set_tag(rid, k, v)
        for k, v in _params(estimator).items():
            client.log_param(rid, k, v)
        if config.log_datasets and X is not None:
            _log_dataset(client, rid, X, y)

    def after() -> None:
        for k, v in _training_metrics(estimator, X, y).items():
            client.log_metric(rid, k, v)
        _log_training_artifacts(client, rid, estimator, X, y)
        if _is_search(estimator):
            _log_search(config, client, run, estimator, X)
        if config.log_models:
            _log_model(config, estimator, X, "model", config.registered_model_name)

    _safely(before)
    try:
        result = original(estimator, *args, **kwargs)
    except BaseException:
        if own:
            fluent.end_run("FAILED")
        raise
    _safely(after)
    if own:
        fluent.end_run()
    return result


def _safely(step: Callable[[], None]) -> None:
    """Autologging never stops the training it records: a refusal (such as a param that
    the run already holds with another value) becomes a warning."""
    try:
        step()
    except CasstoreError as e:
        warnings.warn(f"casstore autologging could not record everything: {e}", UserWarning, stacklevel=4)


#: MLflow's tag on the runs autologging starts (a fit's own run, a search's child runs)
AUTOLOGGING_TAG = MLFLOW_AUTOLOGGING


def _tags(estimator: Any) -> dict[str, str]:
    cls = type(estimator)
    return {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__name__}"}


def _params(estimator: Any) -> dict[str, str]:
    try:
        params = estimator.get_params(deep=True)
    except Exception:  # noqa: BLE001 - a custom estimator's get_params may fail; log what we can
        return {}
    return {str(k): str(v)[:6000] for k, v in params.items()}


def _is_search(estimator: Any) -> bool:
    return hasattr(estimator, "cv_results_") and hasattr(estimator, "best_params_")


def _log_dataset(client: Any, rid: str, X: Any, y: Any) -> None:
    from casstore import data

    try:
        import numpy as np
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            ds: data.Dataset = data.from_pandas(X)
        else:
            ds = data.from_numpy(np.asarray(X), targets=None if y is None else np.asarray(y))
    except (InvalidInputError, TypeError, ValueError):
        return  # data casstore cannot describe (sparse matrices, generators): no dataset input
    client.log_input(rid, ds, "train")


def _training_metrics(estimator: Any, X: Any, y: Any) -> dict[str, float]:
    """MLflow's training metrics for a classifier or a regressor fit on ``X``, ``y``."""
    if X is None or y is None or not hasattr(estimator, "predict"):
        return {}
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}

    def put(name: str, fn: Callable[[], Any]) -> None:
        try:
            value = float(fn())
        except Exception:  # noqa: BLE001 - a metric that does not apply to this model is left out, as in MLflow
            return
        if math.isfinite(value):
            out["training_" + name] = value

    try:
        pred = estimator.predict(X)
    except Exception:  # noqa: BLE001 - an estimator that cannot predict on its training data gets no metrics
        return {}
    if is_classifier(estimator):
        multi = len(set(getattr(y, "tolist", lambda: list(y))())) > 2
        avg = "weighted" if multi else "binary"
        put("accuracy_score", lambda: metrics.accuracy_score(y, pred))
        put("precision_score", lambda: metrics.precision_score(y, pred, average=avg, zero_division=0))
        put("recall_score", lambda: metrics.recall_score(y, pred, average=avg, zero_division=0))
        put("f1_score", lambda: metrics.f1_score(y, pred, average=avg, zero_division=0))
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(X)
            put("log_loss", lambda: metrics.log_loss(y, proba, labels=getattr(estimator, "classes_", None)))
            if multi:
                put("roc_auc", lambda: metrics.roc_auc_score(y, proba, multi_class="ovr"))
            else:
                put("roc_auc", lambda: metrics.roc_auc_score(y, proba[:, 1]))
    elif is_regressor(estimator):
        put("mean_squared_error", lambda: metrics.mean_squared_error(y, pred))
        put("root_mean_squared_error", lambda: math.sqrt(metrics.mean_squared_error(y, pred)))
        put("mean_absolute_error", lambda: metrics.mean_absolute_error(y, pred))
        put("r2_score", lambda: metrics.r2_score(y, pred))
    if hasattr(estimator, "score"):
        put("score", lambda: estimator.score(X, y))
    return out


def _log_training_artifacts(client: Any, rid: str, estimator: Any, X: Any, y: Any) -> None:
    """MLflow's training artifacts: ``estimator.html`` (scikit-learn's diagram of the
    estimator) and, for a classifier with matplotlib installed, ``training_confusion_matrix.png``
    (normalized) and, for two classes, ``training_roc_curve.png`` and
    ``training_precision_recall_curve.png``, drawn on the data it was fit on."""
    from sklearn.base import is_classifier
    from sklearn.utils import estimator_html_repr

    page = f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="UTF-8"/></head>\n<body>\n{estimator_html_repr(estimator)}\n</body>\n</html>\n'
    client.log_text(rid, page, "estimator.html")
    if X is None or y is None or not is_classifier(estimator) or not hasattr(estimator, "predict"):
        return
    try:
        from matplotlib.figure import Figure
        from sklearn import metrics
    except ImportError:
        return  # as MLflow: no plots without matplotlib
    plots: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
        ("confusion_matrix", metrics.ConfusionMatrixDisplay.from_estimator, {"normalize": "true", "cmap": "Blues"})]
    if len(set(getattr(y, "tolist", lambda: list(y))())) == 2:
        plots += [("roc_curve", metrics.RocCurveDisplay.from_estimator, {}),
                  ("precision_recall_curve", metrics.PrecisionRecallDisplay.from_estimator, {})]
    with tempfile.TemporaryDirectory(prefix="casstore-autolog-") as d:
        for name, draw, options in plots:
            fig = Figure(figsize=(6.0, 4.0), dpi=175)
            try:
                draw(estimator, X, y, ax=fig.subplots(), **options)
            except Exception:  # noqa: BLE001 - a plot that does not apply to this model is left out, as in MLflow
                continue
            path = os.path.join(d, f"training_{name}.png")
            fig.savefig(path, bbox_inches="tight")
            client.log_artifact(rid, path)


def _log_model(config: _Config, estimator: Any, X: Any, name: str, registered_model_name: str | None) -> None:
    from casstore.models.signature import infer_signature

    if config.log_model is None:
        raise InvalidInputError("sklearn autologging logs models through casstore.sklearn.autolog(); call that")

    example = _head(X)
    signature: Any = False
    if config.log_model_signatures and example is not None:
        try:
            signature = infer_signature(example, estimator.predict(example))
        except Exception:  # noqa: BLE001 - a model whose output cannot be described is logged without a signature
            signature = False
    config.log_model(
        estimator, name=name, signature=signature,
        input_example=example if config.log_input_examples else None,
        serialization_format=config.serialization_format, registered_model_name=registered_model_name,
    )


def _head(X: Any, n: int = 5) -> Any:
    if X is None:
        return None
    try:
        return X.iloc[:n] if hasattr(X, "iloc") else X[:n]
    except (TypeError, IndexError, KeyError):
        return None


def _log_search(config: _Config, client: Any, run: Any, estimator: Any, X: Any) -> None:
    import pandas as pd

    rid = run.info.run_id
    for k, v in estimator.best_params_.items():
        client.log_param(rid, f"best_{k}", v)
    if hasattr(estimator, "best_score_"):
        client.log_metric(rid, "best_cv_score", float(estimator.best_score_))
    if config.log_models and hasattr(estimator, "best_estimator_"):
        _log_model(config, estimator.best_estimator_, X, "best_estimator", None)
    results = pd.DataFrame.from_dict(estimator.cv_results_)
    with tempfile.TemporaryDirectory(prefix="casstore-autolog-") as d:
        path = os.path.join(d, "cv_results.csv")
        results.to_csv(path, index=False)
        client.log_artifact(rid, path)
    rank = "rank_test_score" if "rank_test_score" in results else next((c for c in results if c.startswith("rank_test_")), None)
    best = results if config.max_tuning_runs is None or rank is None else results.nsmallest(config.max_tuning_runs, rank)
    base = _params(estimator.estimator) if hasattr(estimator, "estimator") else {}
    for _, row in best.iterrows():
        tags = {**_tags(estimator.estimator if hasattr(estimator, "estimator") else estimator), **config.extra_tags,
                MLFLOW_PARENT_RUN_ID: rid, AUTOLOGGING_TAG: "sklearn"}
        child = client.create_run(run.info.experiment_id, tags=tags)
        cid = child.info.run_id
        for k, v in {**base, **{str(k): str(v) for k, v in row.get("params", {}).items()}}.items():
            client.log_param(cid, k, v)
        for k, v in row.items():
            if not str(k).startswith(("param", "split")) and isinstance(v, Number) and math.isfinite(float(v)):  # type: ignore[arg-type]
                client.log_metric(cid, str(k), float(v))  # type: ignore[arg-type]
        client.set_terminated(cid)
