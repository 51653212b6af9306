import Crypto
import Foundation
import GRDB

/// The operators' status page: the counts, then every village worst first (the longest
/// failing first within a state) with its failing checks and since when, a column for each
/// capability that reports one (certificate days, quota use as a bar, last good backup's
/// age), and its last 24 hours of health as an inline SVG strip. Read-only, from the state
/// database as the last sweep left it; nothing in it names a path inside a home.
public struct StatusPage: Sendable {
    public struct Failing: Sendable, Equatable {
        public var check: String
        public var state: HealthState
        public var reason: String
        public var since: Date
    }

    public struct Row: Sendable {
        public var code: String
        public var slug: String
        public var name: String
        public var district: String
        public var state: HealthState
        public var since: Date?
        public var failing: [Failing]
        /// One per column, in the columns' order; nil: nothing to say.
        public var facts: [StatusFact?]
        /// The last 24 hours, oldest first: where each state began (seconds before `now`)
        /// and the state (nil: not checked).
        public var history: [(secondsAgo: Double, state: HealthState?)]
    }

    public var domain: String
    public var report: HealthReport
    public var columns: [String]
    public var rows: [Row]
    public var now: Date

    static let window: TimeInterval = 86_400

    /// Reads the page's facts now: the last sweep, the tenants, 24 hours of recorded changes
    /// and each reporting capability's column.
    public static func load(_ engine: Engine, now: Date? = nil) throws -> StatusPage {
        let now = now ?? engine.now()
        let home = engine.config.webRoot + "/"
        let report = try engine.healthReport().redacted(home: home)
        let start = Timestamp.format(now.addingTimeInterval(-window))
        let (tenants, events) = try engine.store.queue.read { db in
            (try Tenant.order(Column("code")).fetchAll(db),
             try Row_.fetchAll(db, sql: """
                SELECT at, subject, "check", previous, state FROM health_event WHERE at >= ? AND subject != '' ORDER BY id DESC
                """, arguments: [start]))
        }
        let live = tenants.filter { $0.status != .deleted }
        var columns: [String] = []
        var facts: [[String: StatusFact]] = []
        for c in engine.capabilities {
            guard let r = c as? any StatusReporting else { continue }
            let f = try r.statusFacts(engine, tenants: live, now: now)
            if f.isEmpty { continue }
            columns.append(r.statusHeading)
            facts.append(f)
        }
        let byCode = Dictionary(live.map { ($0.code, $0) }, uniquingKeysWith: { a, _ in a })
        let eventsBy = Dictionary(grouping: events, by: \.subject)
        let rows = report.ordered.compactMap { e -> Row? in
            guard let t = byCode[e.code] else { return nil }
            let failing = e.checks.filter { $0.state != .ok }.sorted { $0.state != $1.state ? $0.state > $1.state : $0.since < $1.since }
                .map { Failing(check: $0.check.rawValue, state: $0.state, reason: $0.reason, since: $0.since) }
            return Row(code: t.code, slug: t.slug, name: t.name, district: t.districtName, state: e.state, since: e.since,
                       failing: failing, facts: facts.map { $0[t.code] },
                       history: Self.history(current: e.checks, newestFirst: eventsBy[t.code] ?? [], created: t.createdAt, now: now))
        }
        return StatusPage(domain: engine.config.domain, report: report, columns: columns, rows: rows, now: now)
    }

    /// One recorded change, as the strip needs it.
    struct Row_: FetchableRecord, Sendable {
        var at: Date
        var subject: String
        var check: String
        var previous: HealthState?
        var state: HealthState
        init(at: Date, subject: String, check: String, previous: HealthState?, state: HealthState) {
            self.at = at; self.subject = subject; self.check = check; self.previous = previous; self.state = state
        }
        init(row: GRDB.Row) {
            at = Timestamp.parse(row["at"] as String) ?? .distantPast
            subject = row["subject"]
            check = row["check"]
            previous = (row["previous"] as String?).flatMap(HealthState.init(rawValue:))
            state = HealthState(rawValue: row["state"] as String) ?? .ok
        }
    }

    /// Walks back from the checks' states now through the changes (newest first): the
    /// tenant's worst state over each stretch of the last 24 hours, oldest first. A check's
    /// first look is no recorded change: before its state's `since` with no change there,
    /// it was not checked yet; before the tenant was made, nothing was.
    static func history(current: [CheckStatus], newestFirst recorded: [Row_], created: Date, now: Date)
        -> [(secondsAgo: Double, state: HealthState?)] {
        var events = recorded
        for c in current where !recorded.contains(where: { $0.check == c.check.rawValue && $0.at >= c.since.addingTimeInterval(-1) }) {
            events.append(Row_(at: c.since, subject: "", check: c.check.rawValue, previous: nil, state: c.state))
        }
        events.append(Row_(at: created, subject: "", check: "", previous: nil, state: .ok))
        events.sort { $0.at > $1.at }
        var states = Dictionary(current.map { ($0.check.rawValue, $0.state) }, uniquingKeysWith: { a, _ in a })
        var out: [(Double, HealthState?)] = []
        var end = now
        for e in events where e.at <= now {
            // From this change until the later one, the tenant was as `states` says.
            if e.at < end { out.append((now.timeIntervalSince(e.at), states.values.max())) }
            end = min(end, e.at)
            if e.check.isEmpty { states = [:]; break }
            states[e.check] = e.previous
        }
        out.append((window, states.values.max()))
        // Oldest first, within the window; neighbours in the same state merged.
        var merged: [(secondsAgo: Double, state: HealthState?)] = []
        for (ago, s) in out.reversed() {
            if let last = merged.last, last.state == s { continue }
            if let last = merged.last, ago >= last.secondsAgo { continue }
            merged.append((min(ago, window), s))
        }
        if merged.first.map({ $0.secondsAgo < window }) == true { merged.insert((window, nil), at: 0) }
        return merged
    }

    /// A reason as the page shows it: a path inside a home becomes `~slug/…`.
    static func redact(_ reason: String, home: String) -> String {
        guard reason.contains(home) else { return reason }
        var out = ""
        var rest = Substring(reason)
        while let r = rest.range(of: home) {
            out += rest[..<r.lowerBound]
            let path = rest[r.upperBound...].prefix { !$0.isWhitespace && $0 != ";" && $0 != "," && $0 != ")" && $0 != "\"" && $0 != "'" }
            let slug = path.prefix { $0 != "/" }
            out += "~" + slug + (path.count > slug.count ? "/…" : "")
            rest = rest[path.endIndex...]
        }
        return out + rest
    }

    // MARK: rendering

    static let labels: [HealthState: String] = [.ok: "normal", .degraded: "terganggu", .down: "mati"]
    static let colours: [HealthState: String] = [.ok: "#2e7d32", .degraded: "#b26a00", .down: "#c62828"]

    /// The strip: 96 pixels for 24 hours, a rectangle per stretch, with a text equivalent.
    static func strip(_ history: [(secondsAgo: Double, state: HealthState?)]) -> (svg: String, label: String) {
        let width = 96.0
        var rects = ""
        var share: [String: Double] = [:]
        for (i, h) in history.enumerated() {
            let startAgo = h.secondsAgo
            let endAgo = i + 1 < history.count ? history[i + 1].secondsAgo : 0
            var x = (window - startAgo) / window * width, w = (startAgo - endAgo) / window * width
            share[h.state.flatMap { labels[$0] } ?? "belum diperiksa", default: 0] += startAgo - endAgo
            guard w >= 0.05 || i == history.count - 1 else { continue }
            // The state now shows, however new.
            if i == history.count - 1, w < 1 { w = 1; x = width - 1 }
            let colour = h.state.flatMap { colours[$0] } ?? "#c4c4c4"
            rects += String(format: "<rect x=\"%.1f\" y=\"0\" width=\"%.1f\" height=\"12\" fill=\"%@\"/>", x, w, colour)
        }
        let label = "24 jam terakhir: " + share.sorted { $0.value > $1.value }.map {
            let pct = $0.value / window * 100
            return pct < 1 ? "\($0.key) kurang dari 1%" : String(format: "%@ %.0f%%", $0.key, pct)
        }.joined(separator: ", ")
        let svg = "<svg width=\"96\" height=\"12\" viewBox=\"0 0 96 12\" role=\"img\" aria-label=\"\(label)\"><title>\(label)</title>\(rects)</svg>"
        return (svg, label)
    }

    static func ago(_ d: Date, _ now: Date) -> String {
        let s = max(0, Int(now.timeIntervalSince(d)))
        if s < 120 { return "\(s) detik lalu" }
        if s < 7200 { return "\(s / 60) menit lalu" }
        if s < 172_800 { return "\(s / 3600) jam lalu" }
        return "\(s / 86_400) hari lalu"
    }

    /// The Mustache context of `pages/status`. `links`: each village links to its JSON
    /// (`tenants/SLUG.json`, as the agent serves it); off in a file written once.
    func context(links: Bool) -> [String: Any] {
        let c = report.counts
        let rows = rows.map { r -> [String: Any] in
            let (svg, _) = Self.strip(r.history)
            return [
                "slug": r.slug, "name": r.name, "district": r.district, "code": r.code,
                "state": r.state.rawValue, "state_label": Self.labels[r.state]!,
                "since": r.since.map { Timestamp.format($0) + " (" + Self.ago($0, now) + ")" } ?? false,
                "failing": r.failing.map { f -> [String: Any] in
                    ["check": f.check, "state": f.state.rawValue, "state_label": Self.labels[f.state]!, "reason": f.reason,
                     "since": Self.ago(f.since, now), "since_at": Timestamp.format(f.since)]
                },
                "facts": r.facts.map { f -> [String: Any] in
                    guard let f else { return ["text": "–", "state": "none"] }
                    var o: [String: Any] = ["text": f.text, "state": f.state.rawValue]
                    if let p = f.percent { o["percent"] = String(format: "%.0f", p) }
                    return o
                },
                "strip": svg,
                "json": links ? "tenants/\(r.slug).json" : false,
            ]
        }
        let server = report.server.filter { $0.state != .ok }.map { s -> [String: Any] in
            ["check": s.check.rawValue, "state": s.state.rawValue, "state_label": Self.labels[s.state]!,
             "reason": s.reason, "since": Self.ago(s.since, now)]
        }
        return [
            "domain": domain, "generated": Timestamp.format(now),
            "total": report.tenants.count, "ok": c[.ok] ?? 0, "degraded": c[.degraded] ?? 0, "down": c[.down] ?? 0,
            "sweep": report.sweep.map { s -> [String: Any] in
                ["at": Timestamp.format(s.at), "ago": Self.ago(s.at, now), "by": s.by, "seconds": String(format: "%.1f", s.seconds)]
            } ?? false,
            "stale": report.stale, "interval": report.interval,
            "server": server, "server_ok": server.isEmpty,
            "columns": columns.map { ["heading": $0] }, "rows": rows, "links": links,
        ]
    }

    /// The page. Its one inline style is allowed by its hash (`styleHash`); there is no script.
    public func render(_ r: Renderer, links: Bool) throws -> String {
        var c = context(links: links)
        c["style"] = try Self.style(r)
        return try r.render("pages/status", c)
    }

    static func style(_ r: Renderer) throws -> String { try r.render("partials/status-style", [:]) }

    /// The Content-Security-Policy the agent serves the page with.
    static func policy(_ r: Renderer) throws -> String {
        let hash = "'sha256-" + Data(SHA256.hash(data: Data(try style(r).utf8))).base64EncodedString() + "'"
        return "default-src 'none'; style-src \(hash); base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    }
}

extension HealthReport {
    /// The report with every path inside a home in its reasons shown as `~slug/…`.
    func redacted(home: String) -> HealthReport {
        var r = self
        func clean(_ c: CheckStatus) -> CheckStatus {
            var c = c
            c.reason = StatusPage.redact(c.reason, home: home)
            return c
        }
        r.tenants = tenants.map { t in
            var t = t
            t.checks = t.checks.map(clean)
            return t
        }
        r.server = server.map(clean)
        return r
    }
}
