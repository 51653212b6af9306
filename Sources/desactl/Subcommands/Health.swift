import ArgumentParser
import Foundation
import Provisioner

struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Every tenant's health as desa-agent last found it: worst first, why, and since when.",
        discussion: """
        desa-agent sweeps every health.interval seconds: HTTP and HTTPS through nginx, the \
        PHP-FPM pool's ping, the certificate's days left, the database sign-in and drift for \
        each tenant; the nginx and php-fpm masters, disk space and the state database for the \
        server. Each change of state is also in the journal: journalctl -x DESA_OP=health.

        Exit status: 0 when nothing is down (degraded is reported, not failed), 1 when a \
        tenant or the server is down or nothing has been recorded yet, 2 for bad input. \
        With SLUG, only that tenant counts.
        """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Show one tenant (slug or village code): its checks and its recent journal entries.") var tenant: String?
    @Flag(help: "Sweep now (as desa-agent does) and record it, instead of reading the last sweep.") var now = false
    @Flag(help: "Only tenants that are not ok.") var problems = false
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Show again every --every seconds until interrupted (on a terminal the screen is redrawn; piped, a new report is printed when a sweep was recorded).")
    var watch = false
    @Option(help: ArgumentHelp("Seconds between two looks with --watch.", valueName: "SECONDS")) var every: Double = 2

    func validate() throws {
        guard every >= 0.2, every.isFinite else { throw ValidationError("--every must be at least 0.2 seconds") }
    }

    func run() throws {
        try CLI.run {
            let e = try global.engine(json: true)
            let code = try tenant.map { try e.show($0).tenant.code }
            if !watch {
                let report = try look(e)
                print(render(report, e, code: code), terminator: "")
                if Self.failing(report, code: code) { throw ExitCode(ExitStatus.failed) }
                return
            }
            let terminal = isatty(1) != 0
            var shown: Date?
            while true {
                let report = try look(e)
                if terminal {
                    print("\u{1B}[H\u{1B}[2J" + render(report, e, code: code), terminator: "")
                } else if report.sweep?.at != shown {
                    print(render(report, e, code: code), terminator: "")
                }
                shown = report.sweep?.at
                fflush(nil)
                Thread.sleep(forTimeInterval: every)
            }
        }
    }

    func look(_ e: Engine) throws -> HealthReport {
        if now {
            let sweep = HealthSweep(engine: e)
            let result = try blockingAwait { await sweep.run() }
            try e.recordHealth(result)
        }
        return try e.healthReport()
    }

    static func failing(_ r: HealthReport, code: String?) -> Bool {
        if r.sweep == nil { return true }
        if let code { return r.tenants.first { $0.code == code }?.state == .down || r.serverState == .down }
        return r.anythingDown
    }

    func render(_ r: HealthReport, _ e: Engine, code: String?) -> String {
        if json { return r.json(code: code).serialized(pretty: true) + "\n" }
        var out = ""
        guard let sweep = r.sweep else {
            return "No health recorded yet: is desa-agent running (systemctl status desa-agent)? Or run desactl health --now.\n"
        }
        if let code {
            guard let t = r.tenants.first(where: { $0.code == code }) else {
                return "No health recorded for \(code) yet (it is checked at the next sweep).\n"
            }
            out += "\(t.slug) (\(t.code)): \(t.state.rawValue)\n"
            out += Table.render(header: ["CHECK", "STATE", "SINCE", "REASON"], rows: t.checks.map {
                [$0.check.rawValue, $0.state.rawValue, Self.since($0.since, r.now), $0.reason.isEmpty ? "-" : $0.reason]
            }) + "\n"
            out += "\nRecent journal entries (journalctl DESA_TENANT=\(code)):\n" + Self.journal(code: code, e) + "\n"
        } else {
            var rows: [[String]] = []
            for t in r.ordered where !(problems && t.state == .ok) {
                let failing = t.checks.filter { $0.state != .ok }
                if failing.isEmpty { rows.append([t.state.rawValue, t.slug, "-", "-", "-"]); continue }
                for c in failing.sorted(by: { $0.state > $1.state }) {
                    rows.append([c.state.rawValue, t.slug, c.check.rawValue, Self.since(c.since, r.now), c.reason])
                }
            }
            if !rows.isEmpty { out += Table.render(header: ["STATE", "TENANT", "CHECK", "SINCE", "REASON"], rows: rows) + "\n" }
        }
        let server = r.server.filter { $0.state != .ok }
        out += server.isEmpty ? "server: ok\n"
            : server.map { "server: \($0.check.rawValue) \($0.state.rawValue) since \(Self.since($0.since, r.now)): \($0.reason)" }.joined(separator: "\n") + "\n"
        out += r.summary + ". " + String(format: "Last sweep %@ by %@ (%.1f s), %@.\n", Timestamp.format(sweep.at), sweep.by, sweep.seconds,
                                         Self.ago(r.now.timeIntervalSince(sweep.at)))
        if r.stale {
            out += "WARNING: the last sweep is older than 3 intervals (\(r.interval) s): is desa-agent running (systemctl status desa-agent)?\n"
        }
        return out
    }

    static func since(_ d: Date, _ now: Date) -> String { Timestamp.format(d) + " (" + ago(now.timeIntervalSince(d)) + ")" }

    static func ago(_ s: TimeInterval) -> String {
        let s = max(0, Int(s))
        if s < 120 { return "\(s) s ago" }
        if s < 7200 { return "\(s / 60) min ago" }
        if s < 172_800 { return "\(s / 3600) h ago" }
        return "\(s / 86_400) days ago"
    }

    /// The tenant's recent journal entries, oldest first; the recorded changes of its
    /// checks when the journal cannot be read.
    static func journal(code: String, _ e: Engine) -> String {
        let r = try? e.runner.run(["/usr/bin/journalctl", "--no-pager", "-o", "json", "-n", "15", "DESA_TENANT=\(code)"])
        if let r, r.ok {
            let lines = r.stdout.split(separator: "\n").compactMap { line -> String? in
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let msg = o["MESSAGE"] as? String else { return nil }
                let usec = Double(o["__REALTIME_TIMESTAMP"] as? String ?? "") ?? 0
                return "  " + Timestamp.format(Date(timeIntervalSince1970: usec / 1e6)) + "  " + msg
            }
            if !lines.isEmpty { return lines.joined(separator: "\n") }
        }
        let history = (try? e.healthHistory(code: code, limit: 15)) ?? []
        let why = r.map { $0.ok ? "no entries" : "journalctl: " + $0.message } ?? "journalctl did not run"
        guard !history.isEmpty else { return "  (\(why); no changes recorded)" }
        return "  (\(why); the changes desa recorded:)\n" + history.reversed().map {
            "  " + Timestamp.format($0.at) + "  \($0.check.rawValue) \($0.previous?.rawValue ?? "unknown") -> \($0.state.rawValue)"
                + ($0.reason.isEmpty ? "" : ": " + $0.reason)
        }.joined(separator: "\n")
    }
}
