import Foundation
import Testing
@testable import Provisioner

/// "Say each change once": sweep after sweep against the state database's last states,
/// with no server at all.
@Suite("HealthLedger: each change said once")
struct HealthLedgerTests {
    static let kulon = "3204052001", wetan = "3204052002"
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func sweep(_ at: Int, _ tenants: [String: [CheckOutcome]], server: [CheckOutcome] = [CheckOutcome(.nginx, .ok)]) -> SweepResult {
        SweepResult(tenants: tenants.keys.sorted().map { TenantHealth(code: $0, slug: "s" + $0, outcomes: tenants[$0]!) },
                    server: server, startedAt: t0.addingTimeInterval(Double(at)), duration: .seconds(1))
    }

    /// Runs sweeps one after another as the store would, returning each sweep's changes.
    static func run(_ sweeps: [SweepResult], live: Set<String> = [kulon, wetan]) -> [[HealthTransition]] {
        var latest: [String: [HealthCheck: CheckStatus]] = [:]
        var out: [[HealthTransition]] = []
        for s in sweeps {
            let c = HealthLedger.next(previous: latest, result: s, liveTenants: live)
            for k in c.removed { latest[k.subject]?[k.check] = nil }
            for st in c.statuses { latest[st.subject, default: [:]][st.check] = st }
            out.append(c.transitions)
        }
        return out
    }

    @Test("a first sweep that finds all ok says nothing; one that finds a check down says it, from unknown")
    func firstSweep() {
        let ok = Self.run([Self.sweep(0, [Self.kulon: [CheckOutcome(.http, .ok), CheckOutcome(.php, .ok)]])])
        #expect(ok == [[]])
        let down = Self.run([Self.sweep(0, [Self.kulon: [CheckOutcome(.http, .ok), CheckOutcome(.php, .down, "socket missing")]])])
        #expect(down.count == 1 && down[0].count == 1)
        let t = down[0][0]
        #expect(t.subject == Self.kulon && t.check == .php && t.previous == nil && t.state == .down && t.reason == "socket missing")
        #expect(HealthMessageID.of(t) == HealthMessageID.down)
    }

    @Test("down, down again with another reason, then ok: two changes, the since-time kept while down")
    func downThenRecovered() {
        var latest: [String: [HealthCheck: CheckStatus]] = [:]
        let sweeps = [
            Self.sweep(0, [Self.kulon: [CheckOutcome(.http, .ok)]]),
            Self.sweep(60, [Self.kulon: [CheckOutcome(.http, .down, "HTTP 502 (expected 200)")]]),
            Self.sweep(120, [Self.kulon: [CheckOutcome(.http, .down, "no answer within 5 s")]]),
            Self.sweep(180, [Self.kulon: [CheckOutcome(.http, .ok)]]),
        ]
        var changes: [[HealthTransition]] = []
        for s in sweeps {
            let c = HealthLedger.next(previous: latest, result: s, liveTenants: [Self.kulon])
            for st in c.statuses { latest[st.subject, default: [:]][st.check] = st }
            changes.append(c.transitions)
            if s.startedAt == Self.t0.addingTimeInterval(120) {
                let st = latest[Self.kulon]![.http]!
                #expect(st.since == Self.t0.addingTimeInterval(60), "the since-time is when it went down")
                #expect(st.reason == "no answer within 5 s", "the reason is the latest")
                #expect(st.checkedAt == Self.t0.addingTimeInterval(120))
            }
        }
        #expect(changes.map(\.count) == [0, 1, 0, 1])
        #expect(changes[1][0].previous == .ok && changes[1][0].state == .down)
        #expect(changes[3][0].previous == .down && changes[3][0].state == .ok)
        #expect(HealthMessageID.of(changes[3][0]) == HealthMessageID.recovered)
        #expect(latest[Self.kulon]![.http]!.since == Self.t0.addingTimeInterval(180))
    }

    @Test("degraded to down to degraded: each a change, with the right ids; the server's have their own")
    func kinds() {
        let c = Self.run([
            Self.sweep(0, [Self.kulon: [CheckOutcome(.certificate, .degraded, "9.0 days left")]], server: [CheckOutcome(.disk, .degraded, "5% free")]),
            Self.sweep(60, [Self.kulon: [CheckOutcome(.certificate, .down, "expired")]], server: [CheckOutcome(.disk, .ok)]),
            Self.sweep(120, [Self.kulon: [CheckOutcome(.certificate, .degraded, "3.0 days left")]], server: [CheckOutcome(.disk, .ok)]),
        ])
        #expect(c[0].map { HealthMessageID.of($0) } == [HealthMessageID.serverProblem, HealthMessageID.degraded])
        #expect(c[1].map { HealthMessageID.of($0) } == [HealthMessageID.serverRecovered, HealthMessageID.down])
        #expect(c[2].map { HealthMessageID.of($0) } == [HealthMessageID.degraded])
        #expect(c[2][0].previous == .down)
    }

    @Test("a deleted tenant's rows go without a change; a check a tenant no longer has goes too; a skipped check stays")
    func removals() {
        let first = Self.sweep(0, [Self.kulon: [CheckOutcome(.http, .ok), CheckOutcome(.database, .down, "access denied")],
                                   Self.wetan: [CheckOutcome(.http, .down, "HTTP 404 (expected 200)"), CheckOutcome(.drift, .degraded, "x")]])
        let p = HealthLedger.next(previous: [:], result: first, liveTenants: [Self.kulon, Self.wetan])
        var latest: [String: [HealthCheck: CheckStatus]] = [:]
        for st in p.statuses { latest[st.subject, default: [:]][st.check] = st }
        // wetan deleted; kulon's database dropped; drift not looked at this sweep.
        var second = Self.sweep(60, [Self.kulon: [CheckOutcome(.http, .ok)]])
        second.skipped = [.drift]
        let c = HealthLedger.next(previous: latest, result: second, liveTenants: [Self.kulon])
        #expect(c.transitions.isEmpty)
        let removed = Set(c.removed.map { "\($0.subject)/\($0.check.rawValue)" })
        #expect(removed == ["\(Self.kulon)/database", "\(Self.wetan)/http", "\(Self.wetan)/drift"])
        // A live tenant that was skipped entirely (no outcomes) keeps its drift row.
        var third = Self.sweep(120, [Self.kulon: [CheckOutcome(.http, .ok)]])
        third.skipped = [.drift]
        latest[Self.kulon]![.drift] = CheckStatus(subject: Self.kulon, check: .drift, state: .degraded, reason: "y", since: Self.t0, checkedAt: Self.t0)
        #expect(!HealthLedger.next(previous: latest, result: third, liveTenants: [Self.kulon]).removed.contains { $0.subject == Self.kulon && $0.check == .drift })
    }

    @Test("the summary line counts tenants by their worst check, and names a server problem")
    func summary() {
        var s = Self.sweep(0, [Self.kulon: [CheckOutcome(.http, .ok), CheckOutcome(.php, .down)],
                               Self.wetan: [CheckOutcome(.http, .ok), CheckOutcome(.drift, .degraded)]])
        #expect(s.summary == "2 tenants: 0 ok, 1 degraded, 1 down")
        s.server = [CheckOutcome(.nginx, .down, "not running"), CheckOutcome(.disk, .ok)]
        #expect(s.summary == "2 tenants: 0 ok, 1 degraded, 1 down; server: nginx down")
    }

    @Test("record: the store keeps latest states, a bounded history and the sweep; a second store sees no change")
    func store() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("desa-health-\(UInt32.random(in: 0..<UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try StateStore(path: dir + "/state.sqlite")
        let changes1 = try HealthStore.record(Self.sweep(0, [Self.kulon: [CheckOutcome(.php, .down, "socket missing")]]), by: "test", in: store)
        #expect(changes1.count == 1)
        // The same state again through a new store (as another process would): nothing new.
        let again = try StateStore(path: dir + "/state.sqlite")
        #expect(try HealthStore.record(Self.sweep(60, [Self.kulon: [CheckOutcome(.php, .down, "socket missing")]]), by: "test", in: again).isEmpty)
        for i in 0..<150 {
            let state: HealthState = i % 2 == 0 ? .ok : .down
            _ = try HealthStore.record(Self.sweep(120 + i, [Self.kulon: [CheckOutcome(.php, state, state == .ok ? "" : "x")]]), by: "test", in: store,
                                       historyLimit: 100)
        }
        let history = try store.queue.read { try HealthStore.history($0, subject: Self.kulon, limit: 1000) }
        #expect(history.count == 100, "the history is bounded")
        let sweep = try #require(try store.queue.read { try HealthStore.lastSweep($0) })
        #expect(sweep.at == Self.t0.addingTimeInterval(269) && sweep.tenants == 1 && sweep.by == "test")
    }

    @Test("the store writes whole only the rows that changed; every check that ran gets the sweep's time, a skipped one keeps its own")
    func storeRows() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("desa-health-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try StateStore(path: dir + "/state.sqlite")
        func record(_ r: SweepResult) throws -> [HealthTransition] { try HealthStore.record(r, by: "test", in: store) }
        func row(_ subject: String, _ check: HealthCheck) throws -> CheckStatus? {
            try store.queue.read { try HealthStore.latest($0)[subject]?[check] }
        }
        let t = { (s: Int) in Self.t0.addingTimeInterval(Double(s)) }
        #expect(try record(Self.sweep(0, [Self.kulon: [CheckOutcome(.http, .ok), CheckOutcome(.drift, .ok)]])).isEmpty)
        let down = try record(Self.sweep(60, [Self.kulon: [CheckOutcome(.http, .down, "HTTP 502"), CheckOutcome(.drift, .ok)]]))
        #expect(down.map(\.check) == [.http])
        var skipped = Self.sweep(120, [Self.kulon: [CheckOutcome(.http, .down, "no answer within 5 s")]])
        skipped.skipped = [.drift]
        #expect(try record(skipped).isEmpty, "a new reason is not a change")
        let http = try #require(try row(Self.kulon, .http))
        #expect(http.since == t(60) && http.checkedAt == t(120) && http.reason == "no answer within 5 s")
        let drift = try #require(try row(Self.kulon, .drift))
        #expect(drift.since == t(0) && drift.checkedAt == t(60), "skipped: its last look stands")
        #expect(try row("", .nginx)?.checkedAt == t(120))
        // Unchanged for a sweep: only the time moves.
        #expect(try record(Self.sweep(180, [Self.kulon: [CheckOutcome(.http, .down, "no answer within 5 s"), CheckOutcome(.drift, .ok)]])).isEmpty)
        let again = try #require(try row(Self.kulon, .http))
        #expect(again.since == t(60) && again.checkedAt == t(180))
        #expect(try row(Self.kulon, .drift)?.checkedAt == t(180))
    }
}
