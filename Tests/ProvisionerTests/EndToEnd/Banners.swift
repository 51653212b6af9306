import Foundation
import GRDB
@testable import Provisioner

/// A capability declared here only, as living documentation of every facet: each active
/// tenant gets an nginx server block of its own, `<sites_dir>/<slug>.banner.conf`,
/// answering `banner-<slug>.test` with a line of text. Besides its plan it brings
///
/// - state: a table of its own (`banner_note`, one note per tenant), loaded into its part
///   of the desired state and rendered into each banner;
/// - a health check (`banner`: nginx answers the banner's name with its line), whose value
///   is the line's length;
/// - a metric (`desa_banner_bytes{tenant=...}`) from that value;
/// - a nightly job (03:00 UTC) that writes each tenant's note and applies.
///
/// It plugs in through the registration line alone (`Capabilities.builtIn + [Banners()]`),
/// and its files go through the same write, check, blame, roll back, reload as a vhost.
struct Banners: StatefulCapability, HealthChecking, MetricsProviding, JobProviding {
    /// Tenants (by code) whose banner renders as nginx refuses it.
    var broken: Set<String> = []
    var text = "banner"
    var name: String { "banners" }

    struct Observation: Sendable { var files: [String: String] }
    struct State: Sendable { var notes: [String: String] = [:] }

    func path(_ t: Tenant, _ c: Config) -> String { c.nginx.sitesDir + "/" + t.slug + ".banner.conf" }
    static func host(_ t: Tenant) -> String { "banner-\(t.slug).test" }

    // MARK: state

    var migrations: [StateMigration] {
        [StateMigration("banners-v1") { db in
            try db.create(table: "banner_note") { t in
                t.column("code", .text).primaryKey().references("tenant", onDelete: .cascade)
                t.column("note", .text).notNull()
            }
        }]
    }

    func load(_ db: Database, _ d: DesiredState) throws -> State {
        var notes: [String: String] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT code, note FROM banner_note") { notes[row["code"]] = row["note"] }
        return State(notes: notes)
    }

    static func setNote(_ engine: Engine, code: String, _ note: String) throws {
        try engine.store.queue.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO banner_note (code, note) VALUES (?, ?)", arguments: [code, note])
        }
    }

    // MARK: plan

    func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        Observation(files: host.configFiles(in: [d.config.nginx.sitesDir]).filter { $0.key.hasSuffix(".banner.conf") })
    }

    func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        var files = seen.files
        let notes = d.state(of: Self.self)?.notes ?? [:]
        for t in d.tenants where t.desired == .active {
            let p = path(t, d.config)
            let directive = broken.contains(t.code) ? "retrun" : "return"
            let line = notes[t.code].map { "\(text) \(t.slug): \($0)" } ?? "\(text) \(t.slug)"
            let content = "# desa-managed tenant=\(t.code)\nserver {\n    listen \(d.config.nginx.listen);\n    server_name \(Self.host(t));\n    \(directive) 200 \"\(line)\\n\";\n}\n"
            if let s = Step.write(p, content, service: "nginx", tenant: t.code, existing: files.removeValue(forKey: p)) {
                out.steps.append(s)
            }
            out.probes[t.code] = [.http(host: Self.host(t), address: d.config.nginx.probe, expect: .active)]
        }
        orphanSteps(files, service: "nginx", known: d.known, removeUnknown: d.removeUnknown, into: &out)
        return out
    }

    // MARK: health and metrics

    var healthChecks: [any TenantCheck] { [BannerCheck(text: text)] }

    var metrics: [MetricDefinition] {
        [MetricDefinition(name: "banner_bytes", help: "Length of the line each tenant's banner answers.", check: BannerCheck.id)]
    }

    // MARK: jobs

    func jobs(_ config: Config) -> [Job] {
        [Job("banner-nightly", .daily(hour: 3, minute: 0, randomDelay: 0, timeZone: TimeZone(identifier: "UTC")!)) { ctx in
            let engine = ctx.engine
            let codes = try engine.store.tenants().filter { $0.desired == .active }.map(\.code)
            for code in codes { try Banners.setNote(engine, code: code, "nightly \(Timestamp.format(ctx.due))") }
            let r = try await BlockingThread.run("banner apply") { try engine.apply() }
            return "\(codes.count) notes written; \(r.summary)"
        }]
    }
}

/// nginx answers `banner-<slug>.test` with the banner's line; its value is the line's length.
struct BannerCheck: TenantCheck {
    static let id: HealthCheck = "banner"
    var text: String
    var id: HealthCheck { Self.id }

    func prepare(_ s: SweepContext) async throws -> ProbeAddress {
        guard let a = ProbeAddress(s.config.nginx.probe) else { throw DesaError.system("no probe address") }
        return a
    }

    func check(_ t: Tenant, _ address: ProbeAddress, _ s: SweepContext) async -> CheckOutcome? {
        guard t.desired == .active else { return nil }
        let r = await s.probes.http(address, host: Banners.host(t))
        guard case .answered(200) = r.outcome, r.body.hasPrefix("\(text) \(t.slug)") else {
            return CheckOutcome(id, .down, "banner-\(t.slug).test answered \(r.outcome) \(Quote.show(String(r.body.prefix(40))))",
                                duration: r.elapsed)
        }
        return CheckOutcome(id, .ok, duration: r.elapsed, value: Double(r.body.utf8.count))
    }
}

/// A journal that keeps what it is sent.
final class RecordingJournal: JournalWriting, @unchecked Sendable {
    private let lock = NSLock()
    private var kept: [[String: String]] = []
    func send(_ fields: [String: String]) { lock.withLock { kept.append(fields) } }
    var entries: [[String: String]] { lock.withLock { kept } }
}
