import Foundation

extension HealthReport {
    /// What `desactl health [SLUG] --json` prints and the status page links per village:
    /// the summary, the last sweep, every tenant (or the one with `code`) worst first with
    /// its checks, and the server's checks.
    public func json(code: String?) -> JSON {
        let r = self
        func check(_ c: CheckStatus) -> JSON {
            .object([("check", .string(c.check.rawValue)), ("state", .string(c.state.rawValue)), ("reason", .string(c.reason)),
                     ("since", .string(Timestamp.format(c.since))), ("checked_at", .string(Timestamp.format(c.checkedAt)))])
        }
        let tenants = r.ordered.filter { code == nil || $0.code == code }.map { t in
            JSON.object([("code", .string(t.code)), ("slug", .string(t.slug)), ("state", .string(t.state.rawValue)),
                         ("since", JSON.str(t.since.map(Timestamp.format))), ("checks", .array(t.checks.map(check)))])
        }
        let c = r.counts
        return .object([
            ("summary", .object([("tenants", .int(r.tenants.count)), ("ok", .int(c[.ok] ?? 0)), ("degraded", .int(c[.degraded] ?? 0)),
                                 ("down", .int(c[.down] ?? 0)), ("server", .string(r.serverState.rawValue)), ("line", .string(r.summary))])),
            ("sweep", r.sweep.map { s in .object([("at", .string(Timestamp.format(s.at))), ("seconds", .double(s.seconds)), ("by", .string(s.by))]) } ?? .null),
            ("stale", .bool(r.stale)),
            ("tenants", .array(tenants)),
            ("server", .array(r.server.map(check))),
        ])
    }
}
