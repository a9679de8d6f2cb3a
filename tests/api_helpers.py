"""Talking to the JSON API as a script does: bearer tokens over the Flask test client."""

from models import db
from webapp import accounts


class ApiClient:
    def __init__(self, client, user):
        with db.connection_context():
            self.token = accounts.create_token(user)
        self.client = client
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def _headers(self, extra):
        return {**self.headers, **(extra or {})}

    def get(self, url, headers=None, **kw):
        return self.client.get(url, headers=self._headers(headers), **kw)

    def post(self, url, json=None, headers=None, **kw):
        return self.client.post(url, json=json, headers=self._headers(headers), **kw)

    def put(self, url, json=None, headers=None, **kw):
        return self.client.put(url, json=json, headers=self._headers(headers), **kw)

    def patch(self, url, json=None, headers=None, **kw):
        return self.client.patch(url, json=json, headers=self._headers(headers), **kw)


GENERATE = "/v1/writer/images/generate_images/"
SETTINGS = "/v1/system/settings/integrations/image_generation/"
PROMPTS = "/v1/thinker/prompts/"


def progress_url(task_id):
    return f"/v1/system/task_progress/{task_id}/"
