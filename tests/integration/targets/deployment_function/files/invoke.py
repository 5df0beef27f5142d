"""Invoke a Lambda function through the sandbox and print what it returned as JSON.

Usage: python invoke.py ENDPOINT REGION FUNCTION PAYLOAD_JSON; credentials come from the environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Exits 1 when the function failed.
"""

import json
import sys

import boto3


def main():
    endpoint, region, name, payload = sys.argv[1:5]
    client = boto3.client("lambda", endpoint_url=endpoint, region_name=region)
    answer = client.invoke(FunctionName=name, Payload=payload.encode())
    body = answer["Payload"].read().decode()
    print(json.dumps({"status": answer["StatusCode"], "error": answer.get("FunctionError"), "payload": json.loads(body or "null")}))
    return 1 if answer.get("FunctionError") else 0


if __name__ == "__main__":
    sys.exit(main())
