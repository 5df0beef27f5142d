"""A tiny Lambda handler for the demo: echoes who it greets."""
import json


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"hello": (event or {}).get("name", "world")})}
