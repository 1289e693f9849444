#!/usr/bin/env python3
"""Opens a report page written by `custos report` in a real browser (Debian's Chromium through
Playwright's sync API) and says what the browser made of it.

Usage:
    python report_browser.py FILE [--screenshot PNG [--full-page]] [--timeout SECONDS]

Prints ONE JSON object: {"ok": true, "console": [...every console message, CSP violations
included...], "scripts": <count of script elements>, "header_background": <computed background
colour of header.top, which only the inline stylesheet sets>, "requests": [...every URL the page
asked for beyond itself...], "title": ..., "steps": <count of ol#steps > li>}. With
--screenshot it saves the page as it is, 1280 wide and 800 high (the whole page with
--full-page). Nothing sleeps: loading is Playwright's
`load` wait, bounded by --timeout.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="the report's HTML file")
    parser.add_argument("--screenshot", help="where to save a 1280x800 PNG of the page")
    parser.add_argument("--full-page", action="store_true", help="the whole page, not only the first 800 pixels")
    parser.add_argument("--timeout", type=float, default=20.0, help="longest wait, in seconds")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    url = pathlib.Path(args.file).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="custos-report-chromium-") as scratch:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                scratch, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT
            )
            try:
                page = context.new_page()
                page.set_default_timeout(args.timeout * 1000)
                messages: list[str] = []
                requests: list[str] = []
                page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
                page.on("request", lambda r: requests.append(r.url) if r.url != url else None)
                page.goto(url, wait_until="load")
                report = {
                    "ok": True,
                    "title": page.title(),
                    "console": messages,
                    "requests": requests,
                    "scripts": page.evaluate("document.scripts.length"),
                    "header_background": page.evaluate(
                        "getComputedStyle(document.querySelector('header.top')).backgroundColor"
                    ),
                    "steps": page.locator("ol#steps > li").count(),
                }
                if args.screenshot:
                    page.screenshot(path=args.screenshot, full_page=args.full_page)
                print(json.dumps(report), flush=True)
            finally:
                context.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
