"""rq-dashboard for ops at /rq: admins only, CSRF-checked, with the rq 3 fixes it needs.

rq-dashboard 0.9.0 has no authentication of its own. Everything under /rq passes our login
(anonymous → login page), then this admin check (staff → 403); its POST actions also pass our CSRF
check — its scripts send the `_csrf_token` cookie back as the X-CSRFToken header.
"""

import json

import rq_dashboard
import rq_dashboard.web as dashboard_web
from flask import abort, current_app, g, request
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, requeue_job

from jobs.connection import redis_url
from webapp.csrf import csrf_token
from webapp.errors import json_error


def init_app(app):
    for key in dir(rq_dashboard.default_settings):
        if key.isupper():
            app.config.setdefault(key, getattr(rq_dashboard.default_settings, key))
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url(app.config["SERVICE_CONFIG"], start=False)
    dashboard_web.setup_rq_connection(app)
    bp = rq_dashboard.blueprint
    if not getattr(bp, "_guarded", False):
        bp.before_request(_admins_only)
        bp.after_request(_hand_out_csrf_cookie)
        bp._guarded = True
    app.register_blueprint(bp, url_prefix="/rq")
    # rq 2.6+ returns dependency ids as str; 0.9.0 decodes them as bytes and answers 500 for any
    # job with dependencies (fixed upstream after 0.9.0).
    app.view_functions["rq_dashboard.job_info"] = _job_info
    # A double click requeues a job that has left the failed registry: answer 404, not 500.
    app.view_functions["rq_dashboard.requeue_job_view"] = _requeue_job
    # The job page of a job that does not exist (expired, or a typed id) is a 404, not a 500.
    shown_job_page = app.view_functions["rq_dashboard.job_view"]

    def _job_page(instance_number, job_id):
        if not Job.exists(job_id, connection=current_app.redis_conn):
            abort(404)
        return shown_job_page(instance_number, job_id)

    app.view_functions["rq_dashboard.job_view"] = _job_page


def _admins_only():
    if g.user is None:
        abort(401)
    if not g.user.is_admin:
        abort(403)
    redis_url(current_app.config["SERVICE_CONFIG"])  # starts the embedded Redis if no one has yet
    if request.endpoint == "rq_dashboard.requeue_all" and request.method != "POST":
        # Mass requeue is a state change; the dashboard's own button POSTs.
        abort(405)
    return None


def _hand_out_csrf_cookie(response):
    response.set_cookie("_csrf_token", csrf_token(), path="/rq", samesite="Strict",
                        secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=False)
    return response


def _job_info(instance_number, job_id):
    connection = current_app.redis_conn
    try:
        job = Job.fetch(job_id, serializer=dashboard_web.config.serializer, connection=connection)
    except NoSuchJobError:
        return json_error("No such job.", "NotFound", 404)
    latest = job.latest_result()
    result = {
        "id": job.id,
        "created_at": dashboard_web.serialize_date(job.created_at),
        "enqueued_at": dashboard_web.serialize_date(job.enqueued_at),
        "started_at": dashboard_web.serialize_date(job.started_at),
        "ended_at": dashboard_web.serialize_date(job.ended_at),
        "origin": job.origin,
        "status": job.get_status(),
        "result": job.return_value(),
        "exc_info": latest.exc_string if latest else None,
        "description": dashboard_web.format_job_description(job),
        "metadata": json.dumps(job.get_meta(), default=str),
    }
    dep_ids = [_text(d).split(":")[-1].strip() for d in job.dependency_ids]
    if dep_ids:
        result["depends_on"] = dep_ids
        result["depends_on_status"] = [
            "active" if Job.exists(d, connection=connection) else "expired" for d in dep_ids
        ]
    return current_app.json.response(result), 200, {"Cache-Control": "no-store"}


def _requeue_job(job_id):
    try:
        requeue_job(job_id, connection=current_app.redis_conn)
    except (NoSuchJobError, InvalidJobOperation):
        return json_error("That job is not in the failed registry any more.", "NotFound", 404)
    return current_app.json.response({"status": "OK"}), 200, {"Cache-Control": "no-store"}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
