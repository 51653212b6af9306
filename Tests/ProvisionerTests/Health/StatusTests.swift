import Foundation
import Testing
@testable import Provisioner

/// The operators' status page: its order, its strip, what it hides, at 5,000 tenants, and
/// as desa-agent serves it behind basic auth (a real sandbox and agent).
@Suite("Status page", .serialized)
struct StatusTests {
    static let at = Date(timeIntervalSince1970: 1_800_000_000)

    static func status(_ code: String, _ check: HealthCheck, _ state: HealthState, _ reason: String = "", since: Date = at) -> CheckStatus {
        CheckStatus(subject: code, check: check, state: state, reason: reason, since: since, checkedAt: at)
    }

    /// `n` synthetic villages, every 97th down and every 89th degraded, as the last sweep found them.
    static func page(_ n: Int, name: (Int) -> String = { "Sintetis \($0)" }) throws -> StatusPage {
        var entries: [HealthReport.TenantEntry] = []
        var rows: [StatusPage.Row] = []
        for i in 0..<n {
            let code = String(format: "32.04.%02d.%04d", 10 + i / 200, 2001 + i % 200)
            let state: HealthState = i % 97 == 5 ? .down : i % 89 == 7 ? .degraded : .ok
            let since = at.addingTimeInterval(-Double(i % 50) * 600)
            let checks = [status(code, .http, state, state == .ok ? "" : "HTTP 502", since: since), status(code, .php, .ok)]
            entries.append(HealthReport.TenantEntry(code: code, slug: "sintetis-\(i)", checks: checks))
        }
        let report = HealthReport(tenants: entries, server: [status("", .nginx, .ok)],
                                  sweep: HealthStore.Sweep(at: at, seconds: 4.2, tenants: n, counts: [:], by: "desa-agent"),
                                  now: at.addingTimeInterval(30), interval: 60)
        for (i, e) in report.ordered.enumerated() {
            let failing = e.checks.filter { $0.state != .ok }.map { StatusPage.Failing(check: $0.check.rawValue, state: $0.state, reason: $0.reason, since: $0.since) }
            rows.append(StatusPage.Row(code: e.code, slug: e.slug, name: name(i), district: "Kecamatan \(i / 200)", state: e.state, since: e.since,
                                       failing: failing, facts: [StatusFact("60 hari lagi", .ok), StatusFact("45% dari 2GiB", .ok, percent: 45)],
                                       history: StatusPage.history(current: e.checks, newestFirst: [], created: at.addingTimeInterval(-3 * 86_400),
                                                                   now: report.now)))
        }
        return StatusPage(domain: "bandungkab.go.id", report: report, columns: ["Sertifikat", "Kuota"], rows: rows, now: report.now)
    }

    @Test("5,000 synthetic tenants: the down ones first, then the degraded, each with its failing check; rendered whole")
    func fiveThousand() throws {
        let page = try Self.page(5000)
        let started = Date()
        let html = try page.render(try Renderer(config: RendererTests.config()), links: true)
        let took = Date().timeIntervalSince(started)
        let rows = html.components(separatedBy: "<tr class=\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
        #expect(rows.count == 5000)
        let down = (0..<5000).filter { $0 % 97 == 5 }.count
        let degraded = (0..<5000).filter { $0 % 97 != 5 && $0 % 89 == 7 }.count
        #expect(rows.prefix(down).allSatisfy { $0 == "down" } && rows.dropFirst(down).prefix(degraded).allSatisfy { $0 == "degraded" })
        #expect(rows.dropFirst(down + degraded).allSatisfy { $0 == "ok" })
        #expect(html.contains("<strong>5000</strong> desa/kelurahan: <span class=\"st ok\">\(5000 - down - degraded) normal</span>"))
        #expect(html.components(separatedBy: "HTTP 502").count - 1 == down + degraded)
        #expect(html.components(separatedBy: "<meter").count - 1 == 5000)
        #expect(html.contains("<a href=\"tenants/sintetis-5.json\">JSON</a>"))
        // The bench holds the 1 s target; this only catches a page gone quadratic.
        #expect(took < 10, "rendering 5,000 rows took \(took) s")
        print("StatusTests: 5,000 rows rendered in \(String(format: "%.2f", took)) s (debug build), \(html.utf8.count) bytes")
    }

    @Test("a hostile village name (quotes, <script>, an RTL mark) is text on the status page")
    func hostileName() throws {
        let page = try Self.page(3) { _ in "Suka\"maju <script>alert(1)</script>\u{202E}gpj.exe" }
        let html = try page.render(try Renderer(config: RendererTests.config()), links: false)
        #expect(!html.contains("<script"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;\u{202E}gpj.exe</bdi>"))
        #expect(!html.contains("tenants/"), "a file written once links nowhere")
    }

    @Test("the 24-hour strip: not checked before a check's first look, then its states; the state now shows however new")
    func strip() throws {
        let now = Self.at
        // Made 30 hours ago, first checked 10 hours ago (ok), down for the last hour.
        let current = [Self.status("c", .http, .down, "HTTP 502", since: now.addingTimeInterval(-3600)),
                       Self.status("c", .php, .ok, since: now.addingTimeInterval(-36_000))]
        let events = [StatusPage.Row_(at: now.addingTimeInterval(-3600), subject: "c", check: "http", previous: .ok, state: .down)]
        let h = StatusPage.history(current: current, newestFirst: events, created: now.addingTimeInterval(-30 * 3600), now: now)
        #expect(h.map(\.state) == [nil, .ok, .down])
        #expect(h.map(\.secondsAgo) == [86_400, 36_000, 3600])
        let (svg, label) = StatusPage.strip(h)
        #expect(label == "24 jam terakhir: belum diperiksa 58%, normal 38%, mati 4%")
        #expect(svg.hasPrefix("<svg width=\"96\" height=\"12\"") && svg.contains("role=\"img\"") && svg.contains("#c62828"))
        // Down for one second: still drawn, one pixel wide at the right end.
        let fresh = StatusPage.history(current: [Self.status("c", .http, .down, since: now.addingTimeInterval(-1))],
                                       newestFirst: [StatusPage.Row_(at: now.addingTimeInterval(-1), subject: "c", check: "http", previous: .ok, state: .down)],
                                       created: now.addingTimeInterval(-90_000), now: now)
        #expect(StatusPage.strip(fresh).svg.contains("<rect x=\"95.0\" y=\"0\" width=\"1.0\" height=\"12\" fill=\"#c62828\"/>"))
    }

    @Test("a path inside a home is shown as ~slug/…, anything else as it is")
    func redaction() {
        let home = "/srv/desa/"
        #expect(StatusPage.redact("desactl apply would: fix-directory /srv/desa/cimekar/public; verify", home: home)
                == "desactl apply would: fix-directory ~cimekar/…; verify")
        #expect(StatusPage.redact("create-config /etc/nginx/desa/cimekar.conf", home: home) == "create-config /etc/nginx/desa/cimekar.conf")
        #expect(StatusPage.redact("a /srv/desa/x and /srv/desa/y/z/w", home: home) == "a ~x and ~y/…")
    }

    @Test("basic auth from a root-only file: the right pair in, a wrong one or none out, a file others may read refused")
    func auth() throws {
        let path = "/var/tmp/desa-status-auth-\(getpid())"
        defer { unlink(path) }
        try AtomicFiles.write([FileWrite(path: path, content: "# operators\nops:rahasia-123\n\nlurah:kata:sandi\n", mode: 0o600)])
        func basic(_ pair: String) -> String { "Basic " + Data(pair.utf8).base64EncodedString() }
        #expect(StatusAuth.check(file: path, header: basic("ops:rahasia-123")) == .allowed)
        #expect(StatusAuth.check(file: path, header: basic("lurah:kata:sandi")) == .allowed, "a password may hold a colon")
        #expect(StatusAuth.check(file: path, header: basic("ops:rahasia-12")) == .denied)
        #expect(StatusAuth.check(file: path, header: basic("# operators")) == .denied)
        #expect(StatusAuth.check(file: path, header: nil) == .denied)
        #expect(StatusAuth.check(file: path, header: "Bearer x") == .denied)
        chmod(path, 0o644)
        guard case .unusable(let why) = StatusAuth.check(file: path, header: basic("ops:rahasia-123")) else {
            Issue.record("a file others may read was used"); return
        }
        #expect(why.contains("must be root's and 0600"))
        #expect(StatusAuth.check(file: path + "-missing", header: nil) != .allowed)
    }

    @Test("desa-agent serves the page on loopback behind basic auth: the broken village first, its JSON, nothing inside a home; desactl status --html writes the same")
    func served() throws {
        let h = try SandboxHarness("status")
        defer { h.destroy() }
        try #require(try h.desactl("tenant", "import", try h.bandungSubset(5)).ok)
        #expect(try h.desactl("health", "--now").status == 0)
        let c = try h.config()
        #expect(chmod(h.dir + "/srv/cimekar/public", 0o000) == 0)
        #expect(try h.desactl("health", "--now").status == 1)

        let auth = h.dir + "/status.auth"
        try AtomicFiles.write([FileWrite(path: auth, content: "ops:rahasia-123\n", mode: 0o600)])
        let port = SandboxHarness.freePort()
        try h.set("status", ["listen": "\"127.0.0.1:\(port)\"", "auth_file": "\"\(auth)\""])
        let agent = try Spawned([AgentTests.agent, "--config", h.configPath, "--interval", "3600"], environment: ["PATH": "/usr/bin:/bin"])
        defer { agent.stop() }
        func get(_ path: String, _ user: String? = "ops:rahasia-123") throws -> (code: String, body: String, headers: String) {
            let hdr = h.dir + "/headers.txt"
            let r = try h.runner.run(["/usr/bin/curl", "-s", "-D", hdr, "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"]
                                     + (user.map { ["-u", $0] } ?? []))
            let code = String(r.stdout.split(separator: "\n").last ?? "")
            return (code, String(r.stdout.dropLast(code.count + 1)), Support.read(hdr))
        }
        var first = (code: "000", body: "", headers: "")
        for _ in 0..<100 {
            first = try get("/", nil)
            if first.code != "000" { break }
            usleep(100_000)
        }
        #expect(first.code == "401" && first.headers.contains("WWW-Authenticate: Basic realm=\"desa status\""), "\(first)")
        #expect(try get("/", "ops:salah").code == "401")
        let page = try get("/")
        #expect(page.code == "200")
        #expect(page.headers.contains("Content-Security-Policy: default-src 'none'; style-src 'sha256-"))
        let rows = page.body.components(separatedBy: "<tr class=\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
        #expect(rows.first == "down" && rows.count == 5, "\(rows)")
        #expect(page.body.contains("<bdi>Cimekar</bdi>"))
        #expect(page.body.contains("~cimekar/…") && !page.body.contains(c.webRoot + "/"), "a path inside a home is shown")
        #expect(page.body.contains("<strong>5</strong> desa/kelurahan: <span class=\"st ok\">4 normal</span>"))
        let json = try get("/tenants/cimekar.json")
        #expect(json.code == "200")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(json.body.utf8)) as? [String: Any])
        let tenants = o["tenants"] as? [[String: Any]] ?? []
        #expect(tenants.count == 1 && tenants.first?["state"] as? String == "down" && tenants.first?["slug"] as? String == "cimekar")
        #expect(!json.body.contains(c.webRoot + "/"))
        #expect(try get("/tenants/tidak-ada.json").code == "404")
        #expect(try get("/tenants/../../etc/passwd").code == "404")
        // Read-only.
        let post = try h.runner.run(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-u", "ops:rahasia-123",
                                     "http://127.0.0.1:\(port)/"])
        #expect(post.stdout == "405")
        // A file others may read is refused at the next request, and the log says why.
        chmod(auth, 0o644)
        #expect(try get("/").code == "500")

        let file = h.dir + "/status.html"
        let written = try h.desactl("status", "--html", file)
        #expect(written.ok, "\(written.message)")
        var st = stat()
        #expect(stat(file, &st) == 0 && st.st_mode & 0o777 == 0o600)
        let text = Support.read(file)
        #expect(text.components(separatedBy: "<tr class=\"").dropFirst().first?.hasPrefix("down") == true)
        #expect(!text.contains("tenants/cimekar.json") && !text.contains(c.webRoot + "/"))
    }
}
