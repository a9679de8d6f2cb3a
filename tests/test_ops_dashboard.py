"""rq-dashboard at /rq: admins only, and it works with rq 3 against a real Redis."""

from rq import Queue
from rq.job import Dependency, Job

from tests.conftest import login, wait_for


def test_anonymous_is_sent_to_login(client, personas):
    response = client.get("/rq/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_staff_get_403(client, personas):
    login(client, personas.owner)
    assert client.get("/rq/").status_code == 403
    assert client.get("/rq/0/data/queues.json").status_code == 403


def test_staff_cannot_requeue_even_with_csrf(client, personas):
    token = login(client, personas.owner)
    response = client.post("/rq/job/anything/requeue", headers={"X-CSRFToken": token})
    assert response.status_code == 403


def test_admin_sees_the_dashboard_and_navigation_link(client, personas, redis_conn):
    login(client, personas.admin)
    assert client.get("/rq/").status_code == 200
    assert b'href="/rq/"' in client.get("/").data


def test_staff_do_not_see_the_ops_link(client, personas):
    login(client, personas.owner)
    assert b'href="/rq/"' not in client.get("/").data


def test_mass_requeue_is_not_reachable_by_get(client, personas, redis_conn):
    login(client, personas.admin)
    assert client.get("/rq/requeue/images").status_code == 405


def test_dashboard_post_without_csrf_is_refused(client, personas, redis_conn):
    login(client, personas.admin)
    assert client.post("/rq/job/x/requeue").status_code == 403


def test_dashboard_hands_its_scripts_the_csrf_token(client, personas, redis_conn):
    token = login(client, personas.admin)
    response = client.get("/rq/")
    assert f"_csrf_token={token}" in response.headers.get("Set-Cookie", "")


def test_pages_render_for_jobs_with_dependencies_and_requeue_works(client, personas, worker, redis_conn):
    """The pinned rq + rq-dashboard pair, proven together on a real worker."""
    queue = Queue("images", connection=redis_conn)
    failing = queue.enqueue("tests.job_helpers.always_fails", "first try fails")
    dependent = queue.enqueue("tests.job_helpers.add", 1, 2,
                              depends_on=Dependency(jobs=[failing], allow_failure=True))
    wait_for(lambda: Job.fetch(failing.id, connection=redis_conn).get_status() == "failed", message="failure")
    wait_for(lambda: Job.fetch(dependent.id, connection=redis_conn).get_status() == "finished",
             message="allow_failure dependent ran")

    token = login(client, personas.admin)
    for url in ["/rq/", "/rq/0/view/workers", "/rq/0/data/queues.json",
                "/rq/0/data/workers.json", f"/rq/0/view/job/{dependent.id}",
                "/rq/0/view/jobs/images/failed/8/asc/1", "/rq/0/data/jobs/images/failed/8/asc/1.json"]:
        assert client.get(url).status_code == 200, url
    info = client.get(f"/rq/0/data/job/{dependent.id}.json").get_json()
    assert info["depends_on"] == [failing.id]
    failed_info = client.get(f"/rq/0/data/job/{failing.id}.json").get_json()
    assert "first try fails" in failed_info["exc_info"]

    response = client.post(f"/rq/job/{failing.id}/requeue", headers={"X-CSRFToken": token})
    assert response.status_code == 200 and response.get_json() == {"status": "OK"}
    wait_for(lambda: Job.fetch(failing.id, connection=redis_conn).get_status() == "failed"
             and len(Job.fetch(failing.id, connection=redis_conn).results()) >= 2, message="re-run")
    # A second click on the same, no longer failed-registered job is a clean 404, not a 500.
    queue.failed_job_registry.remove(failing.id)
    again = client.post(f"/rq/job/{failing.id}/requeue", headers={"X-CSRFToken": token})
    assert again.status_code == 404


def test_the_page_of_a_job_that_does_not_exist_is_a_404(client, personas, redis_conn):
    login(client, personas.admin)
    assert client.get("/rq/0/view/job/no-such-job").status_code == 404
