"""Just enough of an azure-core HTTP response to build a real HttpResponseError (Azure and pydo share azure-core)."""
import json


class AzureCoreResponse:
    def __init__(self, status, body, headers=None):
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self.content_type = "application/json"
        self._body = body
        self.request = None

    def json(self):
        return self._body

    def text(self, encoding=None):
        return json.dumps(self._body)

    def body(self):
        return json.dumps(self._body).encode()
