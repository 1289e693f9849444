#!/usr/bin/env python3
"""Drives the Custos console in a real browser (Debian's Chromium through Playwright's sync API).

Usage:
    python console_browser.py --base URL [--user-data-dir DIR] [--timeout SECONDS]
    python console_browser.py --check

`--check` starts the browser, loads a page, prints `{"ok": true, ...}` and exits: whether this
machine can run the browser tests at all.

Otherwise it starts one browser (one profile: cookies persist from step to step) and reads
commands from stdin, ONE JSON object per line, each with an "op"; for each it prints ONE JSON
object on stdout: {"ok": true, ...what the op reports} or {"ok": false, "error": "..."}. A
failed op does not end the driver, so the test can say what went wrong; EOF or {"op": "quit"}
ends it. Every wait is Playwright's (for an element, a URL, a response) bounded by --timeout;
nothing sleeps.

Ops (URL paths are relative to --base):
    sign_in_oidc {email}        /console/sign-in, a#oidc-sign-in, the provider's login form
                                (email, any password), back to the inbox; reports who (#who),
                                url, session (the cookie's value) and fingerprint (what the
                                audit log records of the session: 16 hex of its SHA-256)
    sign_in_link {url}          opens a one-time link, clicks button#continue; same report
    inbox {id?}                 /console/approvals; with id, waits for its row; reports ids
                                (every tr[data-approval-id]) and row (that row's text)
    open {id}                   /console/approvals/ID; reports status, state (#state), cannot
                                (#cannot text or null), can_decide (form#approve present)
    decide {id, verdict, reason?}
                                on the request page: the reason typed into form#VERDICT, its
                                button, then form#confirm's #confirm-decision; reports the
                                confirmation's status, then status, state and url after it
    deny_empty {id}             form#deny sent with an empty reason (its `required` removed
                                first, as a client without HTML validation would); reports the
                                answer's status and #error
    forced_post {id, verdict}   fetch() from the page: the decide form's fields with this
                                session's CSRF token (from the header's sign-out form) and
                                confirm=yes; reports status and body
    calls_watch {}              /console/calls: reports status (404: the page is not there);
                                else waits for table#calls[data-stream], marks the page (a
                                reload would lose the mark) and reports rows (tr.call count)
    calls_wait {text}           waits for a tr.call containing text in the watched page;
                                reports rows and reloaded (false: the mark is still there)
    run {run}                   /console/runs/RUN: status; when 200 waits for svg#timeline
    screenshot {path}           the page as it is, 1280x800
    sign_out {}                 button#sign-out in the header; reports url, who (null once
                                signed out) and the sign-in page's message (#error)
    quit
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import traceback
from typing import Any, Callable
from urllib.parse import quote

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
SESSION_COOKIE = "custos_console"


class OpFailed(Exception):
    """An op could not do what it says; the message goes into the op's answer."""


def launch(playwright: Any, user_data_dir: str) -> Any:
    return playwright.chromium.launch_persistent_context(
        user_data_dir,
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
    )


class Console:
    def __init__(self, context: Any, base: str, timeout_ms: float) -> None:
        self.context = context
        self.base = base.rstrip("/")
        self.page = context.pages[0] if context.pages else context.new_page()
        self.page.set_default_timeout(timeout_ms)
        self.page.set_default_navigation_timeout(timeout_ms)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}{path}"

    def goto(self, path: str) -> int:
        response = self.page.goto(self.url(path))
        return response.status if response else 0

    def text_or_none(self, selector: str) -> str | None:
        found = self.page.locator(selector)
        return found.first.inner_text().strip() if found.count() else None

    def session(self) -> dict[str, Any]:
        """Who the header says is signed in, and the session cookie with its fingerprint."""
        who = self.page.locator("#who").inner_text().strip()
        cookies = [c for c in self.context.cookies(self.base) if c["name"].endswith(SESSION_COOKIE)]
        if not cookies:
            raise OpFailed(f"signed in as {who!r} but no *{SESSION_COOKIE} cookie is set")
        token = cookies[0]["value"]
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:16]
        return {
            "who": who,
            "url": self.page.url,
            "cookie_name": cookies[0]["name"],
            "session": token,
            "fingerprint": fingerprint,
            "http_only": cookies[0].get("httpOnly"),
            "same_site": cookies[0].get("sameSite"),
        }

    # --- ops ---------------------------------------------------------------

    def sign_in_oidc(self, email: str) -> dict[str, Any]:
        self.goto("/console/sign-in")
        self.page.click("a#oidc-sign-in")
        self.page.wait_for_url("**/interaction/**")
        provider = self.page.url
        self.page.fill('input[name="login"]', email)
        self.page.fill('input[name="password"]', "any password")
        self.page.click('button[type="submit"]')
        # The callback's page moves on to the inbox by itself (a meta refresh).
        self.page.wait_for_url(f"{self.base}/console/approvals**")
        self.page.wait_for_selector("#who")
        return {**self.session(), "provider_page": provider}

    def sign_in_link(self, url: str) -> dict[str, Any]:
        status = self.goto(url)
        if status != 200:
            return {"status": status, "error_text": self.text_or_none("#error")}
        with self.page.expect_navigation():
            self.page.click("button#continue")
        self.page.wait_for_selector("#who")
        return {"status": status, **self.session()}

    def inbox(self, id: str | None = None) -> dict[str, Any]:
        status = self.goto("/console/approvals")
        row = None
        if id is not None:
            found = self.page.wait_for_selector(f'tr[data-approval-id="{id}"]')
            row = found.inner_text() if found else None
        ids = self.page.eval_on_selector_all(
            "tr[data-approval-id]", "rows => rows.map(r => r.dataset.approvalId)"
        )
        return {"status": status, "ids": ids, "row": row}

    def open(self, id: str) -> dict[str, Any]:
        status = self.goto(f"/console/approvals/{quote(id)}")
        return {
            "status": status,
            "state": self.text_or_none("#state"),
            "cannot": self.text_or_none("#cannot"),
            "can_decide": self.page.locator("form#approve").count() == 1,
            "error_text": self.text_or_none("#error"),
        }

    def decide(self, id: str, verdict: str, reason: str | None = None) -> dict[str, Any]:
        if verdict not in ("approve", "deny"):
            raise OpFailed(f"verdict must be approve or deny, not {verdict!r}")
        self.open(id)
        form = self.page.locator(f"form#{verdict}")
        if reason is not None:
            form.locator('input[name="reason"]').fill(reason)
        with self.page.expect_navigation() as asked:
            self.page.click(f"#{verdict}-button")
        confirm_status = asked.value.status if asked.value else 0
        if self.page.locator("form#confirm").count() != 1:
            return {"confirm_status": confirm_status, "error_text": self.text_or_none("#error")}
        with self.page.expect_navigation() as done:
            self.page.click("button#confirm-decision")
        status = done.value.status if done.value else 0
        return {
            "confirm_status": confirm_status,
            "status": status,
            "url": self.page.url,
            "state": self.text_or_none("#state"),
            "decision": self.text_or_none("#decision"),
            "error_text": self.text_or_none("#error"),
        }

    def deny_empty(self, id: str) -> dict[str, Any]:
        self.open(id)
        self.page.eval_on_selector('form#deny input[name="reason"]', "i => { i.required = false; i.value = ''; }")
        with self.page.expect_navigation() as sent:
            self.page.click("#deny-button")
        return {
            "status": sent.value.status if sent.value else 0,
            "error_text": self.text_or_none("#error"),
            "confirm_shown": self.page.locator("form#confirm").count() == 1,
        }

    def forced_post(self, id: str, verdict: str = "approve") -> dict[str, Any]:
        path = f"/console/approvals/{quote(id)}/decide"
        answer = self.page.evaluate(
            """async ([path, verdict]) => {
                const csrf = document.querySelector('input[name="csrf"]');
                if (!csrf) return { status: -1, body: 'no csrf field on this page' };
                const body = new URLSearchParams({ csrf: csrf.value, verdict, reason: 'forced', confirm: 'yes' });
                const r = await fetch(path, { method: 'POST', body, redirect: 'manual' });
                return { status: r.status, body: await r.text() };
            }""",
            [path, verdict],
        )
        return {"status": answer["status"], "body": answer["body"][:2000]}

    def calls_watch(self) -> dict[str, Any]:
        status = self.goto("/console/calls")
        if status != 200:
            return {"status": status}
        self.page.wait_for_selector("table#calls[data-stream]")
        self.page.evaluate("() => { window.__custosNotReloaded = true; }")
        return {"status": status, "rows": self.page.locator("table#calls tr.call").count()}

    def calls_wait(self, text: str) -> dict[str, Any]:
        self.page.locator("table#calls tr.call", has_text=text).first.wait_for()
        reloaded = not self.page.evaluate("() => window.__custosNotReloaded === true")
        return {"rows": self.page.locator("table#calls tr.call").count(), "reloaded": reloaded}

    def run(self, run: str) -> dict[str, Any]:
        status = self.goto(f"/console/runs/{quote(run)}")
        if status == 200:
            self.page.wait_for_selector("svg#timeline")
        return {"status": status}

    def sign_out(self) -> dict[str, Any]:
        with self.page.expect_navigation():
            self.page.click("button#sign-out")
        return {"url": self.page.url, "who": self.text_or_none("#who"), "message": self.text_or_none("#error")}

    def screenshot(self, path: str) -> dict[str, Any]:
        self.page.screenshot(path=path, full_page=False)
        return {"path": path}


def serve(console: Console) -> None:
    ops: dict[str, Callable[..., dict[str, Any]]] = {
        "sign_in_oidc": console.sign_in_oidc,
        "sign_in_link": console.sign_in_link,
        "inbox": console.inbox,
        "open": console.open,
        "decide": console.decide,
        "deny_empty": console.deny_empty,
        "forced_post": console.forced_post,
        "calls_watch": console.calls_watch,
        "calls_wait": console.calls_wait,
        "run": console.run,
        "screenshot": console.screenshot,
        "sign_out": console.sign_out,
    }
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
            op = command.pop("op")
            if op == "quit":
                answer: dict[str, Any] = {"ok": True}
                print(json.dumps(answer), flush=True)
                return
            if op not in ops:
                raise OpFailed(f"unknown op {op!r}")
            answer = {"ok": True, **ops[op](**command)}
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test, which fails
            answer = {
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
                "url": console.page.url,
                "trace": traceback.format_exc(limit=3),
            }
        print(json.dumps(answer), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the console's base URL, http://HOST:PORT")
    parser.add_argument("--user-data-dir", help="a fresh, empty profile directory (default: a new temporary one)")
    parser.add_argument("--timeout", type=float, default=20.0, help="longest wait of one step, in seconds")
    parser.add_argument("--check", action="store_true", help="only check that the browser starts")
    args = parser.parse_args()
    if not args.check and not args.base:
        parser.error("--base is required (or --check)")

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="custos-chromium-") as scratch:
        with sync_playwright() as p:
            context = launch(p, args.user_data_dir or scratch)
            try:
                if args.check:
                    page = context.new_page()
                    page.set_content('<p id="x">ready</p>')
                    print(
                        json.dumps({"ok": page.inner_text("#x") == "ready", "browser": context.browser.version
                                    if context.browser else None}),
                        flush=True,
                    )
                    return 0
                serve(Console(context, args.base, args.timeout * 1000))
            finally:
                context.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
