"""The function of the deployment_function target: answers with its greeting and the event it got."""

import os


def handler(event, context):
    return {"greeting": os.environ.get("GREETING"), "event": event, "request": getattr(context, "aws_request_id", None)}
