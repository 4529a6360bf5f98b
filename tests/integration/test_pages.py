"""Pages a new guest or staff member meets before they have joined or logged in: each one is a page in
the app's style that says what to do, not a JSON error."""

from __future__ import annotations

from tests.integration.conftest import Harness

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_root_is_a_landing_page(harness: Harness) -> None:
    code, body = await harness.http("GET", "/", headers=HTML)
    assert code == 200
    assert isinstance(body, str) and "/static/app.css" in body
    assert "Scan the QR code on your table" in body
    assert 'href="/staff"' in body and 'href="/kitchen"' in body


async def test_guest_page_without_a_join_says_scan_the_qr_code(harness: Harness) -> None:
    code, body = await harness.http("GET", "/guest", headers=HTML)
    assert code == 200
    assert "Scan the QR code on your table to join" in body
    assert "sitting is closed" not in body and "guest.js" not in body
    # With a cookie the guest page itself loads; its script tells a live sitting from an ended one.
    joined = await harness.join("T001")
    code, body = await harness.http("GET", "/guest", headers={**HTML, "Cookie": f"tableside_token={joined['token']}"})
    assert code == 200 and "guest.js" in body and "Scan the QR code on your table to join" not in body


async def test_qr_join_errors_are_styled_pages_with_what_to_do(harness: Harness) -> None:
    code, body = await harness.http("GET", "/q/T001/not-the-secret", headers=HTML)
    assert code == 403
    assert "/static/app.css" in body and "class=topbar" in body
    assert "This QR code is not valid for the table" in body
    assert "A member of staff can help" in body
    code, body = await harness.http("GET", "/q/T999/whatever", headers=HTML)
    assert code == 404 and "No table" in body and "Please ask staff" in body


async def test_qr_sheet_without_login_tells_a_browser_to_log_in(harness: Harness) -> None:
    code, body = await harness.http("GET", "/staff/qr-sheet", headers=HTML)
    assert code == 401
    assert isinstance(body, str) and "<!doctype html>" in body
    assert "href='/staff'" in body and "Log in on the staff console" in body
    code, body = await harness.http("GET", "/staff/qr-sheet?token=stale", headers=HTML)
    assert code == 401 and "expired" in body
    # API clients keep the JSON error.
    code, body = await harness.http("GET", "/staff/qr-sheet")
    assert code == 401 and body == {"error": "unauthorized", "message": "staff login required"}
    code, body = await harness.http("GET", "/staff/qr-sheet", headers={"Accept": "application/json"})
    assert code == 401 and body["error"] == "unauthorized"
    token = await harness.staff_token()
    code, body = await harness.http("GET", f"/staff/qr-sheet?token={token}", headers=HTML)
    assert code == 200 and "Scan to order" in body
