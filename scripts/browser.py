#!/usr/bin/env python3
"""Looks at a page as a person would: Debian's headless chromium, driven over the DevTools
protocol (python3-websocket). Prints one JSON object: what the page lists, what typing in
its search box leaves shown, every request the browser made, every console error, the
first paint, and the same list with JavaScript off; keeps screenshots at desktop and
phone widths.

    browser.py URL --map HOST [--map HOST ...] [--type TEXT] [--shots DIR] [--prefix NAME]

Only the hosts given with --map resolve (to 127.0.0.1); any other host the page asked
for would fail and still show in "requests". Used by the end-to-end portal test.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

LISTING = """(() => {
  const items = [...document.querySelectorAll('li[data-cari]')];
  const sections = [...document.querySelectorAll('section[data-kecamatan]')];
  return {
    items: items.length,
    visible: items.filter(li => li.offsetParent !== null).length,
    sections: sections.length,
    visible_sections: sections.filter(s => s.offsetParent !== null).length,
    form_shown: !!document.getElementById('cari-form') && !document.getElementById('cari-form').hidden,
    said: (document.getElementById('hasil') || {}).textContent || '',
    villages: items.map(li => ({
      name: li.querySelector('a').textContent,
      href: li.querySelector('a').getAttribute('href'),
      state: li.querySelector('.st').className.replace('st ', ''),
      kecamatan: li.closest('section').getAttribute('data-kecamatan'),
      shown: li.offsetParent !== null,
    })),
    lang: document.documentElement.lang,
    title: document.title,
    h1: (document.querySelector('h1') || {}).textContent || '',
    fcp: ((performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint') || {}).startTime) || null,
  };
})()"""


class Browser:
    def __init__(self, maps):
        self.dir = tempfile.mkdtemp(prefix="desa-chromium-")
        rules = ", ".join(f"MAP {h} 127.0.0.1" for h in maps)
        binary = shutil.which("chromium") or "/usr/bin/chromium"
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
             "--disable-default-apps", "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={self.dir}", f"--host-resolver-rules={rules}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.dir, "DevToolsActivePort")
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.05)
        port = open(port_file).read().split("\n")[0].strip()
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def send(self, method, **params):
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def receive(self, until, floor):
        """Keeps the next event that arrives before `until` (time.time()); False when none did."""
        self.ws.settimeout(max(floor, until - time.time()))
        try:
            msg = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return False
        if "method" in msg:
            self.events.append(msg)
        return True

    def wait_for(self, method, timeout=20):
        deadline = time.time() + timeout
        seen = len(self.events)
        while time.time() < deadline:
            for e in self.events[seen:]:
                if e["method"] == method:
                    return e
            seen = len(self.events)
            if not self.receive(deadline, 0.1):
                break
        raise RuntimeError(f"no {method} within {timeout} s")

    def evaluate(self, expression):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate: {r['exceptionDetails']}")
        return r["result"].get("value")

    def load(self, url):
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def settle(self, seconds=0.3):
        """Reads the events that arrive for a moment (late console messages, requests)."""
        end = time.time() + seconds
        while time.time() < end and self.receive(end, 0.05):
            pass

    def screenshot(self, path, width, height, mobile):
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=2 if mobile else 1, mobile=mobile)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        self.send("Emulation.clearDeviceMetricsOverride")

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.dir, ignore_errors=True)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("url")
    a.add_argument("--map", action="append", default=[])
    a.add_argument("--type", default=None)
    a.add_argument("--shots", default=None)
    a.add_argument("--prefix", default="portal")
    args = a.parse_args()
    b = Browser(args.map)
    out = {}
    try:
        for domain in ("Page", "Runtime", "Network", "Log"):
            b.send(f"{domain}.enable")
        b.load(args.url)
        b.settle()
        out["loaded"] = b.evaluate(LISTING)
        if args.shots:
            os.makedirs(args.shots, exist_ok=True)
            b.screenshot(os.path.join(args.shots, f"{args.prefix}-desktop.png"), 1280, 900, False)
            b.screenshot(os.path.join(args.shots, f"{args.prefix}-phone.png"), 390, 844, True)
        if args.type is not None:
            b.evaluate("document.getElementById('cari').focus()")
            b.send("Input.insertText", text=args.type)
            b.settle(0.2)
            typed = b.evaluate(LISTING)
            typed["villages"] = [v for v in typed["villages"] if v["shown"]]
            out["typed"] = typed
            out["focused"] = b.evaluate("document.activeElement && document.activeElement.id")
            if args.shots:
                b.screenshot(os.path.join(args.shots, f"{args.prefix}-typed-phone.png"), 390, 844, True)
        # Without JavaScript the whole list still shows (the search form stays hidden).
        b.send("Emulation.setScriptExecutionDisabled", value=True)
        b.load(args.url)
        b.settle()
        nojs = b.evaluate(LISTING)
        out["no_script"] = {k: nojs[k] for k in ("items", "visible", "sections", "form_shown")}
        b.send("Emulation.setScriptExecutionDisabled", value=False)
    finally:
        b.close()
    requests, errors = [], []
    for e in b.events:
        m, p = e["method"], e.get("params", {})
        if m == "Network.requestWillBeSent":
            requests.append(p["request"]["url"])
        elif m == "Runtime.exceptionThrown":
            errors.append(p["exceptionDetails"].get("text", "exception"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(x.get("value", x.get("description", ""))) for x in p.get("args", [])))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            errors.append(p["entry"].get("text", ""))
    out["requests"] = requests
    out["console_errors"] = errors
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
