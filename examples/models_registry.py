import casstore as mlflow
import casstore.sklearn
from casstore.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
from sklearn.ensemble import RandomForestClassifier

with mlflow.start_run():
    iris = load_iris()
    model = DecisionTreeClassifier().fit(iris.data, iris.target)
    signature = infer_signature(iris.data, model.predict(iris.data))
    model_info = mlflow.sklearn.log_model(model, name="iris_classifier", signature=signature)
    print(f"Model URI: {model_info.model_uri}")

with mlflow.start_run():
    rf = RandomForestClassifier(n_estimators=100).fit(iris.data, iris.target)
    mlflow.sklearn.log_model(rf, name="rf_model", registered_model_name="production-classifier")

loaded = mlflow.pyfunc.load_model("models:/production-classifier/1")
print(loaded.predict(iris.data[:5]))
