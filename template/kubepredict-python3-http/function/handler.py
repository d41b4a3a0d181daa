"""A new Kubepredict function: adapt a neutral callable from kubepredict.api (see functions/*/handler.py)."""


def handle(event, context):
    """Answer every request (python3-http contract: event.body/headers/method/query/path)."""
    return {"statusCode": 200, "body": "Hello from Kubepredict"}
