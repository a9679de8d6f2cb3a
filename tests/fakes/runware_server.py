"""A fake Runware REST API (`POST /v1` with a task array) that validates like the real one."""

import base64
import random
import uuid

from tests.fakes.base import FakeServer, Fault, Recorded, Reply
from tests.fakes.images import NOT_IMAGES, make_image, truncated

MODELS = {"runware:100@1": 0.0013, "runware:101@1": 0.0038, "runware:97@1": 0.009}  # model → cost per image
FORMATS = {"JPG": "jpg", "PNG": "png", "WEBP": "webp"}
OUTPUT_TYPES = ("URL", "base64Data", "dataURI")


def errors(status: int, code: str, message: str, *, parameter=None, task=None) -> Reply:
    entry = {"code": code, "message": message, "parameter": parameter,
             "taskType": (task or {}).get("taskType", "imageInference")}
    if task and task.get("taskUUID"):
        entry["taskUUID"] = task["taskUUID"]
    return Reply(status, {"errors": [entry]})


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


class FakeRunware(FakeServer):
    generation_path = "/v1"
    load_overflow = "queue"  # "no hard rate limits": load shows up as latency

    def __init__(self, api_key: str = "rw-fake-runware-key-0123456789abcdef"):
        super().__init__(api_key)

    def prompt_of(self, payload):
        return next(t.get("positivePrompt") for t in payload if t.get("taskType") == "imageInference")

    def inference_tasks(self, call: Recorded) -> list:
        return [t for t in call.json if isinstance(t, dict) and t.get("taskType") == "imageInference"]

    def check(self, call: Recorded) -> Reply | None:
        tasks = call.json
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
            return errors(400, "invalidJSON", "The body must be a JSON array of task objects.")
        header = (call.headers.get("Authorization") or "").removeprefix("Bearer ")
        keys = {t.get("apiKey") for t in tasks if t.get("taskType") == "authentication"}
        if header:
            keys.add(header)
        if not keys:
            return errors(401, "missingApiKey", "No API key was given.", parameter="apiKey",
                          task={"taskType": "authentication"})
        if keys != {self.api_key}:
            return errors(401, "invalidApiKey", "Invalid API key. Get one at https://my.runware.ai.",
                          parameter="apiKey", task={"taskType": "authentication"})
        for task in tasks:
            if task.get("taskType") not in ("authentication", "imageInference"):
                return errors(400, "unsupportedTaskType", f"Unsupported taskType {task.get('taskType')!r}.",
                              parameter="taskType", task=task)
        if not self.inference_tasks(call):
            return errors(400, "missingTask", "No imageInference task was given.")
        for task in self.inference_tasks(call):
            problem = self._task_problem(task)
            if problem:
                return errors(400, problem[0], problem[2], parameter=problem[1], task=task)
        return None

    @staticmethod
    def _task_problem(task: dict) -> tuple[str, str, str] | None:
        """(code, parameter, message) for the first thing Runware would refuse in this task."""
        if not _is_uuid(task.get("taskUUID")):
            return "invalidTaskUUID", "taskUUID", "taskUUID must be a UUID v4 string."
        prompt = task.get("positivePrompt")
        if not isinstance(prompt, str) or not 2 <= len(prompt) <= 3000:
            return "invalidPositivePrompt", "positivePrompt", "positivePrompt must be 2 to 3000 characters."
        if "negativePrompt" in task and (not isinstance(task["negativePrompt"], str) or not task["negativePrompt"]):
            return "invalidNegativePrompt", "negativePrompt", "negativePrompt must be a non-empty string."
        if task.get("model") not in MODELS:
            return "invalidModel", "model", f"Model {task.get('model')!r} does not exist."
        for side in ("width", "height"):
            value = task.get(side)
            if not isinstance(value, int) or value % 64 or not 512 <= value <= 2048:
                return (f"invalid{side.title()}", side,
                        f"{side} must be a multiple of 64 between 512 and 2048; got {value!r}.")
        if not isinstance(task.get("numberResults", 1), int) or not 1 <= task.get("numberResults", 1) <= 20:
            return "invalidNumberResults", "numberResults", "numberResults must be 1 to 20."
        if task.get("outputType", "URL") not in OUTPUT_TYPES:
            return "invalidOutputType", "outputType", f"outputType must be one of {', '.join(OUTPUT_TYPES)}."
        if task.get("outputFormat", "JPG") not in FORMATS:
            return "invalidOutputFormat", "outputFormat", "outputFormat must be JPG, PNG or WEBP."
        return None

    def fault_reply(self, call: Recorded, fault: Fault) -> Reply | None:
        task = (self.inference_tasks(call) or [{}])[0] if isinstance(call.json, list) else {}
        kind, message = fault.kind, fault.message
        replies = {
            "rate_limit": (429, "rateLimitExceeded", "Too many requests."),
            "server_error": (fault.status or 500, "internalServerError", "An unexpected error occurred."),
            "unauthorized": (401, "invalidApiKey", "Invalid API key."),
            "insufficient_balance": (402, "insufficientCredits", "Insufficient credits. Top up your account."),
            "forbidden": (403, "forbidden", "This API key cannot use this model."),
            "bad_request": (fault.status or 400, "invalidParameter", "Invalid request."),
        }
        if kind in replies:
            status, code, default = replies[kind]
            return errors(status, code, message or default, task=task)
        if kind == "error_in_200":  # Runware scopes errors to tasks; a 200 can carry only errors
            reply = errors(200, "inferenceFailed", message or "The image could not be generated.", task=task)
            return reply
        if kind == "no_image":
            return Reply(200, {"data": []})
        return None

    def success(self, call: Recorded, fault: Fault) -> Reply:
        data = []
        for task in self.inference_tasks(call):
            for _ in range(task.get("numberResults", 1)):
                data.append(self._result(task, fault))
        return Reply(200, {"data": data})

    def _result(self, task: dict, fault: Fault) -> dict:
        fmt = FORMATS[task.get("outputFormat", "JPG")]
        image, content_type = make_image(task["width"], task["height"], fmt, seed=task["positivePrompt"])
        if fault.kind == "non_image":
            image, content_type = NOT_IMAGES[fault.image]
        if fault.kind == "truncated_image":
            image = truncated(image)
        image_uuid = str(uuid.uuid4())
        result = {"taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": image_uuid,
                  "seed": task.get("seed", random.randint(1, 2**31)), "NSFWContent": False}
        if fault.kind == "wrong_task":
            result["taskUUID"] = str(uuid.uuid4())
        output_type = task.get("outputType", "URL")
        if output_type == "URL":
            url = self.store_file(f"{image_uuid}.{fmt}", image, fault.content_type or content_type, folder="image")
            if fault.kind == "expired_url":
                self.expire(url)
            result["imageURL"] = url
        encoded = base64.b64encode(image).decode()
        if output_type == "base64Data" or fault.kind == "invalid_base64":
            result["imageBase64Data"] = "not*base64!" if fault.kind == "invalid_base64" else encoded
        if output_type == "dataURI":
            result["imageDataURI"] = f"data:{content_type};base64,{encoded}"
        if task.get("includeCost"):
            result["cost"] = MODELS[task["model"]]
        return result
