"""The engine with a function that makes one AI call for the whole task (the plan's text functions),
registered through the real registry: adding a function is one class and one registry line."""

from dataclasses import dataclass

import pytest

from jobs.base import AICall, BaseAIFunction, Prepared
from jobs.engine import AIEngine
from jobs.progress import task_progress
from jobs.registry import get_function, register_lazy_function
from models import AITaskLog, db
from tests import factories

SAVED = []
SEEN_WHILE_SAVING = []


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
        return OnePicturePrepared(items=[], task_id=payload["task_id"], prompt=payload["prompt"])

    def build_prompt(self, data, account_id):
        return AICall("generate_image", {"prompt": data.prompt, "provider": "placeholder",
                                         "model": "placeholder-v1", "size": "1024x1024"})

    def parse_response(self, response):
        return {"bytes": response["bytes"], "cost": response["cost"]}

    def save_output(self, parsed, original_data, account_id):
        # What staff see while the one call's answer is being saved: the task has not ended yet.
        SEEN_WHILE_SAVING.append(task_progress(original_data.task_id, account_id))
        SAVED.append(len(parsed["bytes"]))
        return {"count": 1, "cost": parsed["cost"]}


@dataclass(frozen=True)
class OnePicturePrepared(Prepared):
    prompt: str = ""


class _Inline:
    """Runs the parent job at once, in this process, as a worker would."""

    def enqueue(self, func, task_id, **kwargs):
        task = AITaskLog.get(AITaskLog.task_id == task_id)
        AIEngine(get_function(task.function_name), task_id, task.account_id).run_parent(task.payload)


register_lazy_function("one_picture", f"{__name__}:OnePictureFunction")


def test_a_single_call_function_runs_every_phase_and_logs_them(personas):
    with db.connection_context():
        account = factories.account_id("A")
        engine = AIEngine(get_function("one_picture"), "single-task", account, queue=_Inline())
        engine.start({"prompt": "A lighthouse"})
        task = AITaskLog.get(AITaskLog.task_id == "single-task")
        final = task_progress("single-task", account)
    assert task.state == "done" and task.phase == "DONE" and task.finished_at
    # Every phase the engine went through is in the task's log, in order, with its message.
    assert [s["phase"] for s in task.step_logs] == ["INIT", "PREP", "AI_CALL", "PARSE", "SAVE", "DONE"]
    assert task.step_logs[-1]["message"] == "Done"
    assert SAVED and SAVED[-1] > 1000
    # Running until the end, though a single-call task has no items to count.
    during = SEEN_WHILE_SAVING[-1]
    assert (during["state"], during["phase"], during["percent"]) == ("running", "SAVE", 0)
    assert (final["state"], final["phase"], final["percent"]) == ("done", "DONE", 100)


def test_a_single_call_function_refuses_bad_input_before_anything_runs(personas):
    from jobs.errors import ValidationError

    with db.connection_context():
        engine = AIEngine(get_function("one_picture"), "refused-task", factories.account_id("A"), queue=_Inline())
        with pytest.raises(ValidationError, match="A prompt is needed"):
            engine.start({})
        assert not AITaskLog.select().where(AITaskLog.task_id == "refused-task").exists()
