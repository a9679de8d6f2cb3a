"""A fake Runware REST API (`POST /v1` with a task array) that validates like the real one."""

import base64
import random
import uuid
from dataclasses import dataclass

from tests.fakes.base import FakeServer, Fault, Recorded, Reply
from tests.fakes.images import NOT_IMAGES, make_image, truncated


@dataclass(frozen=True)
class Sides:
    """A size rule: each side a multiple of `step` within `low`..`high`. Runware's rules are per model."""

    step: int = 64
    low: int = 512
    high: int = 2048

    def problem(self, side: str, value) -> str | None:
        if _is_int(value) and not value % self.step and self.low <= value <= self.high:
            return None
        return f"{side} must be a multiple of {self.step} between {self.low} and {self.high}; got {value!r}."


@dataclass(frozen=True)
class Model:
    name: str
    cost: float  # USD per image, what `includeCost` answers
    sides: Sides = Sides()


CATALOGUE = {
    "runware:100@1": Model("FLUX.1 schnell", 0.0013),
    "runware:101@1": Model("FLUX.1 dev", 0.0038),
    "runware:400@1": Model("FLUX.2 dev", 0.012),
    "runware:97@1": Model("HiDream-I1", 0.009),
}
MODELS = {air: model.cost for air, model in CATALOGUE.items()}  # model → cost per image, for the tests' sums
FORMATS = {"JPG": "jpg", "PNG": "png", "WEBP": "webp"}
OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
DEPRECATED = ("checkNsfw",)  # still accepted, but recorded: the client should have moved to `safety`


def errors(status: int, code: str, message: str, *, parameter=None, task=None) -> Reply:
    """Runware's error shape: scoped to a task, with its type and UUID (None for a body without one)."""
    task = task or {}
    return Reply(status, {"errors": [{"code": code, "message": message, "parameter": parameter,
                                      "taskType": task.get("taskType", "imageInference"),
                                      "taskUUID": task.get("taskUUID")}]})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a number to Runware


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

    def reset(self):
        super().reset()
        with self._lock:
            # AIR id → cost of models an account may type beyond ours (e.g. "civitai:4384@128713").
            self.extra_models: dict[str, float] = {}
            # (taskUUID, field) for each task that sent a deprecated field.
            self.deprecated_fields: list[tuple[str | None, str]] = []

    def model(self, air) -> Model | None:
        if air in self.extra_models:
            return Model(air, self.extra_models[air])
        return CATALOGUE.get(air)

    def cost_of(self, air: str) -> float:
        """The per-image cost this fake answers for a model, extra ones included."""
        return self.model(air).cost

    def prompt_of(self, payload):
        return next(t.get("positivePrompt") for t in payload if t.get("taskType") == "imageInference")

    def inference_tasks(self, call: Recorded) -> list:
        tasks = call.json if isinstance(call.json, list) else []
        return [t for t in tasks if isinstance(t, dict) and t.get("taskType") == "imageInference"]

    def answer(self, handler, call: Recorded):
        # Noted before any fault or refusal, so a test sees every call that still sends one.
        with self._lock:
            self.deprecated_fields += [(task.get("taskUUID"), field) for task in self.inference_tasks(call)
                                       for field in DEPRECATED if field in task]
        return super().answer(handler, call)

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

    def _task_problem(self, task: dict) -> tuple[str, str, str] | None:
        """(code, parameter, message) for the first thing Runware would refuse in this task."""
        if not _is_uuid(task.get("taskUUID")):
            return "invalidTaskUUID", "taskUUID", "taskUUID must be a UUID v4 string."
        prompt = task.get("positivePrompt")
        if not isinstance(prompt, str) or not 2 <= len(prompt) <= 3000:
            return "invalidPositivePrompt", "positivePrompt", "positivePrompt must be 2 to 3000 characters."
        if "negativePrompt" in task and (not isinstance(task["negativePrompt"], str) or not task["negativePrompt"]):
            return "invalidNegativePrompt", "negativePrompt", "negativePrompt must be a non-empty string."
        model = self.model(task.get("model"))
        if model is None:
            return "invalidModel", "model", f"Model {task.get('model')!r} does not exist."
        for side in ("width", "height"):
            message = model.sides.problem(side, task.get(side))
            if message:
                return f"invalid{side.title()}", side, message
        if not _is_int(task.get("numberResults", 1)) or not 1 <= task.get("numberResults", 1) <= 20:
            return "invalidNumberResults", "numberResults", "numberResults must be 1 to 20."
        if task.get("outputType", "URL") not in OUTPUT_TYPES:
            return "invalidOutputType", "outputType", f"outputType must be one of {', '.join(OUTPUT_TYPES)}."
        if task.get("outputFormat", "JPG") not in FORMATS:
            return "invalidOutputFormat", "outputFormat", "outputFormat must be JPG, PNG or WEBP."
        return self._option_problem(task)

    @staticmethod
    def _option_problem(task: dict) -> tuple[str, str, str] | None:
        """The optional fields: absent is fine, present must be of the documented type and range."""
        rules = {
            "outputQuality": (lambda v: _is_int(v) and 20 <= v <= 99, "an integer from 20 to 99"),
            "includeCost": (lambda v: isinstance(v, bool), "a boolean"),
            "ttl": (lambda v: _is_int(v) and v >= 60, "an integer of at least 60 (seconds)"),
            "steps": (lambda v: _is_int(v) and 1 <= v <= 100, "an integer from 1 to 100"),
            "CFGScale": (lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 50,
                         "a number from 0 to 50"),
            "seed": (lambda v: _is_int(v) and 1 <= v <= 2**63 - 1, "an integer from 1 to 2^63-1"),
            "checkNsfw": (lambda v: isinstance(v, bool), "a boolean (deprecated: use safety.checkContent)"),
            # Only the documented shape: {"checkContent": true|false}, nothing more.
            "safety": (lambda v: isinstance(v, dict) and set(v) == {"checkContent"}
                       and isinstance(v["checkContent"], bool), 'an object {"checkContent": true|false}'),
        }
        for name, (valid, wanted) in rules.items():
            if name in task and not valid(task[name]):
                return f"invalid{name[0].upper()}{name[1:]}", name, f"{name} must be {wanted}; got {task[name]!r}."
        return None

    def fault_reply(self, call: Recorded, fault: Fault) -> Reply | None:
        task = (self.inference_tasks(call) or [{}])[0]
        kind, message = fault.kind, fault.message
        replies = {  # kind → (status, code, message, parameter)
            "rate_limit": (429, "rateLimitExceeded", "Too many requests.", None),
            "server_error": (fault.status or 500, "internalServerError", "An unexpected error occurred.", None),
            "unauthorized": (401, "invalidApiKey", "Invalid API key.", "apiKey"),
            "insufficient_balance": (402, "insufficientCredits", "Insufficient credits. Top up your account balance.",
                                     None),
            "forbidden": (403, "forbidden", "This API key cannot use this model.", "model"),
            "bad_request": (fault.status or 400, "invalidParameter", "Invalid request.", None),
            # Safety refusals: Runware answers them as a bad request of the task.
            "content_policy": (400, "contentPolicyViolation", "The prompt violates the content policy.",
                               "positivePrompt"),
            "prompt_blocked": (400, "promptBlocked", "The prompt was blocked by the safety filter.",
                               "positivePrompt"),
            # Real only with safety.checkContent; answered whenever scripted so a client's handling is testable.
            "nsfw_detected": (400, "nsfwContentDetected", "The generated image was flagged as NSFW content.", None),
            # Codes are still being standardized: a client must go by the HTTP status of one it doesn't know.
            "unknown_code": (fault.status or 400, "someNewCode2026", "A new kind of failure.", None),
        }
        if kind in replies:
            status, code, default, parameter = replies[kind]
            return errors(status, code, message or default, parameter=parameter, task=task)
        if kind == "error_in_200":  # Runware scopes errors to tasks; a 200 can carry only errors
            return errors(200, "inferenceFailed", message or "The image could not be generated.", task=task)
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
        if task.get("includeCost") is True:
            result["cost"] = self.cost_of(task["model"])
        return result
