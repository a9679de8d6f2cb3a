"""The engine with a function that makes one AI call for the whole task (the plan's text functions),
registered through the real registry: adding a function is one class and one registry line."""

import pytest

from jobs.base import AICall, BaseAIFunction
from jobs.engine import AIEngine
from jobs.registry import get_function, register_lazy_function
from models import AITaskLog, db
from tests import factories

SAVED = []


class OnePictureFunction(BaseAIFunction):
    def get_name(self):
        return "one_picture"

    def get_metadata(self):
        return {"display_name": "One picture", "phases": {"INIT": "Checking", "DONE": "Done"}}

    def validate(self, payload, account_id):
        if not payload.get("prompt"):
            from jobs.errors import ValidationError
            raise ValidationError("A prompt is needed.")
        return payload

    def prepare(self, payload, account_id):
        return {"items": [], "prompt": payload["prompt"]}

    def build_prompt(self, data, account_id):
        return AICall("generate_image", {"prompt": data["prompt"], "provider": "placeholder",
                                         "model": "placeholder-v1", "size": "1024x1024"})

    def parse_response(self, response, step_tracker=None):
        return {"bytes": response["bytes"], "cost": response["cost"]}

    def save_output(self, parsed, original_data, account_id, step_tracker=None):
        SAVED.append(len(parsed["bytes"]))
        return {"count": 1, "cost": parsed["cost"]}


class _Inline:
    """Runs the parent job at once, in this process."""

    def enqueue(self, func, function_name, payload, account_id, **kwargs):
        AIEngine(get_function(function_name), payload["task_id"], account_id).run_parent(payload)


register_lazy_function("one_picture", f"{__name__}:OnePictureFunction")


def test_a_single_call_function_runs_every_phase_and_logs_them(personas):
    with db.connection_context():
        account = factories.account_id("A")
        engine = AIEngine(get_function("one_picture"), "single-task", account, queue=_Inline())
        engine.start({"prompt": "A lighthouse"})
        task = AITaskLog.get(AITaskLog.task_id == "single-task")
    assert task.state == "done" and task.phase == "DONE" and task.finished_at
    assert [s["phase"] for s in task.step_logs] == ["INIT", "PREP"]
    assert SAVED and SAVED[-1] > 1000


def test_a_single_call_function_refuses_bad_input_before_anything_runs(personas):
    from jobs.errors import ValidationError

    with db.connection_context():
        engine = AIEngine(get_function("one_picture"), "refused-task", factories.account_id("A"), queue=_Inline())
        with pytest.raises(ValidationError, match="A prompt is needed"):
            engine.start({})
        assert not AITaskLog.select().where(AITaskLog.task_id == "refused-task").exists()
