import casstore as mlflow
import casstore.sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.metrics import accuracy_score

iris = load_iris()
X, y = iris.data, iris.target
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42)
with mlflow.start_run(run_name="Iris Logistic Regression"):
    mlflow.log_param("C", 0.1)
    mlflow.log_param("solver", "lbfgs")
    model = LogisticRegression(C=0.1, solver="lbfgs", random_state=42).fit(X_train, y_train)
    mlflow.log_metric("accuracy", accuracy_score(y_test, model.predict(X_test)))
    mlflow.sklearn.log_model(model, "iris_model")
    print(f"MLflow Run ID: {mlflow.active_run().info.run_id}")
    print(f"Logged Parameter C: {mlflow.get_run().data.params['C']}")
    print(f"Logged Metric Accuracy: {mlflow.get_run().data.metrics['accuracy']}")
