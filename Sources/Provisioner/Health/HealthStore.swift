import Foundation
import GRDB

/// Health in the state database: the latest state of each tenant's (and the server's)
/// checks with the time it began, a bounded history of changes, and the last sweep.
/// Changes are found against what the database holds, not against a process's memory,
/// so a restarted agent, or `desactl health --now` between two sweeps, never says a
/// change twice.
public enum HealthStore {
    static let migration = StateMigration("v4-health") { db in
        try db.create(table: "health_check") { t in
            t.column("subject", .text).notNull()
            t.column("check", .text).notNull()
            t.column("state", .text).notNull()
            t.column("reason", .text).notNull()
            t.column("since", .text).notNull()
            t.column("checkedAt", .text).notNull()
            t.primaryKey(["subject", "check"])
        }
        try db.create(table: "health_event") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("at", .text).notNull()
            t.column("subject", .text).notNull()
            t.column("check", .text).notNull()
            t.column("previous", .text)
            t.column("state", .text).notNull()
            t.column("reason", .text).notNull()
        }
        try db.create(index: "health_event_subject", on: "health_event", columns: ["subject", "id"])
        try db.create(table: "health_sweep") { t in
            t.column("id", .integer).primaryKey()
            t.column("at", .text).notNull()
            t.column("seconds", .double).notNull()
            t.column("tenants", .integer).notNull()
            t.column("ok", .integer).notNull()
            t.column("degraded", .integer).notNull()
            t.column("down", .integer).notNull()
            t.column("by", .text).notNull()
        }
    }

    /// How many changes the history keeps (the oldest go first).
    public static let defaultHistoryLimit = 20_000

    /// The last sweep, as recorded.
    public struct Sweep: Sendable, Equatable {
        public var at: Date
        public var seconds: Double
        public var tenants: Int
        public var counts: [HealthState: Int]
        /// Who ran it: `desa-agent` or the user of `desactl health --now`.
        public var by: String
    }

    /// What the database holds: the latest statuses, by subject then check.
    public static func latest(_ db: Database) throws -> [String: [HealthCheck: CheckStatus]] {
        var out: [String: [HealthCheck: CheckStatus]] = [:]
        // A cursor: a sweep of 5,000 tenants reads 20,000 rows, which need not all be in memory twice.
        let rows = try Row.fetchCursor(db, sql: "SELECT subject, \"check\", state, reason, since, checkedAt FROM health_check")
        while let row = try rows.next() {
            let check = HealthCheck(rawValue: row["check"])
            guard let state = HealthState(rawValue: row["state"]),
                  let since = Timestamp.parse(row["since"]), let at = Timestamp.parse(row["checkedAt"]) else { continue }
            let subject: String = row["subject"]
            out[subject, default: [:]][check] = CheckStatus(subject: subject, check: check, state: state, reason: row["reason"],
                                                            since: since, checkedAt: at)
        }
        return out
    }

    public static func lastSweep(_ db: Database) throws -> Sweep? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM health_sweep WHERE id = 1"),
              let at = Timestamp.parse(row["at"]) else { return nil }
        return Sweep(at: at, seconds: row["seconds"], tenants: row["tenants"],
                     counts: [.ok: row["ok"], .degraded: row["degraded"], .down: row["down"]], by: row["by"])
    }

    /// A subject's changes, newest first.
    public static func history(_ db: Database, subject: String, limit: Int) throws -> [HealthTransition] {
        try Row.fetchAll(db, sql: "SELECT * FROM health_event WHERE subject = ? ORDER BY id DESC LIMIT ?",
                         arguments: [subject, limit]).compactMap { row in
            let check = HealthCheck(rawValue: row["check"])
            guard let state = HealthState(rawValue: row["state"]),
                  let at = Timestamp.parse(row["at"]) else { return nil }
            return HealthTransition(subject: subject, check: check, previous: (row["previous"] as String?).flatMap(HealthState.init),
                                    state: state, reason: row["reason"], at: at)
        }
    }

    /// Records a sweep in one transaction and returns the changes it made, to be said in
    /// the journal. Tenants gone from the database lose their rows; a check a tenant no
    /// longer has (no certificate, no database) loses its row without a change; checks in
    /// `result.skipped` keep their last state.
    public static func record(_ result: SweepResult, by: String, in store: StateStore,
                              historyLimit: Int = defaultHistoryLimit) throws -> [HealthTransition] {
        try store.queue.write { db in
            let previous = try latest(db)
            let live = Set(try String.fetchAll(db, sql: "SELECT code FROM tenant WHERE status != 'deleted'"))
            let change = HealthLedger.next(previous: previous, result: result, liveTenants: live)
            for key in change.removed {
                try db.execute(sql: "DELETE FROM health_check WHERE subject = ? AND \"check\" = ?", arguments: [key.subject, key.check.rawValue])
            }
            // Rows whose state, reason or since-time changed are written whole; the others
            // (nearly all, sweep after sweep) only get this sweep's time, in one statement.
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO health_check (subject, "check", state, reason, since, checkedAt) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(subject, "check") DO UPDATE SET state = excluded.state, reason = excluded.reason,
                  since = excluded.since, checkedAt = excluded.checkedAt
                """)
            var touched = Set<String>()
            for s in change.statuses {
                touched.insert(s.subject)
                if let old = previous[s.subject]?[s.check], old.state == s.state, old.reason == s.reason, old.since == s.since { continue }
                try upsert.execute(arguments: [s.subject, s.check.rawValue, s.state.rawValue, s.reason, Timestamp.format(s.since),
                                               Timestamp.format(s.checkedAt)])
            }
            let subjects = String(decoding: try JSONEncoder().encode(touched.sorted()), as: UTF8.self)
            let skipped = String(decoding: try JSONEncoder().encode(result.skipped.map(\.rawValue)), as: UTF8.self)
            try db.execute(sql: """
                UPDATE health_check SET checkedAt = ?1 WHERE checkedAt != ?1
                  AND subject IN (SELECT value FROM json_each(?2)) AND "check" NOT IN (SELECT value FROM json_each(?3))
                """, arguments: [Timestamp.format(result.startedAt), subjects, skipped])
            for t in change.transitions {
                try db.execute(sql: "INSERT INTO health_event (at, subject, \"check\", previous, state, reason) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [Timestamp.format(t.at), t.subject, t.check.rawValue, t.previous?.rawValue, t.state.rawValue, t.reason])
            }
            if !change.transitions.isEmpty {
                try db.execute(sql: "DELETE FROM health_event WHERE id <= (SELECT MAX(id) FROM health_event) - ?", arguments: [historyLimit])
            }
            let c = result.counts
            try db.execute(sql: """
                INSERT OR REPLACE INTO health_sweep (id, at, seconds, tenants, ok, degraded, down, by) VALUES (1, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [Timestamp.format(result.startedAt), result.duration.seconds, result.tenants.count,
                                 c[.ok] ?? 0, c[.degraded] ?? 0, c[.down] ?? 0, by])
            return change.transitions
        }
    }
}

/// From what the database held and what a sweep found: the statuses to write, the rows to
/// remove and the changes. Pure.
public enum HealthLedger {
    public struct Key: Hashable, Sendable {
        public var subject: String
        public var check: HealthCheck
    }

    public struct Change: Sendable, Equatable {
        public var statuses: [CheckStatus] = []
        public var removed: [Key] = []
        public var transitions: [HealthTransition] = []
    }

    /// A first look that finds a check ok says nothing (a new tenant is not news); one that
    /// finds it degraded or down is a change from unknown. A state that stays keeps its
    /// since-time; its reason is updated without a change.
    public static func next(previous: [String: [HealthCheck: CheckStatus]], result: SweepResult, liveTenants: Set<String>) -> Change {
        var change = Change()
        let now = result.startedAt
        let skipped = Set(result.skipped)
        func observe(_ subject: String, _ outcomes: [CheckOutcome]) {
            let before = previous[subject] ?? [:]
            var seen = Set<HealthCheck>()
            for o in outcomes {
                seen.insert(o.check)
                let old = before[o.check]
                var status = CheckStatus(subject: subject, check: o.check, state: o.state, reason: o.reason, since: now, checkedAt: now)
                if let old, old.state == o.state {
                    status.since = old.since
                } else if old != nil || o.state != .ok {
                    change.transitions.append(HealthTransition(subject: subject, check: o.check, previous: old?.state, state: o.state,
                                                               reason: o.reason, at: now, fields: o.fields))
                }
                change.statuses.append(status)
            }
            for check in before.keys.sorted(by: { $0.rawValue < $1.rawValue }) where !seen.contains(check) && !skipped.contains(check) {
                change.removed.append(Key(subject: subject, check: check))
            }
        }
        observe("", result.server)
        var swept = Set<String>()
        for t in result.tenants {
            swept.insert(t.code)
            observe(t.code, t.outcomes)
        }
        for subject in previous.keys.sorted() where !subject.isEmpty && !swept.contains(subject) && !liveTenants.contains(subject) {
            for check in previous[subject]!.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
                change.removed.append(Key(subject: subject, check: check))
            }
        }
        return change
    }
}

extension Duration {
    /// As seconds, with their fraction.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
