import Foundation
import GRDB

/// The jobs facet: work a capability has desa-agent do on a schedule (certificate
/// renewals every hour; a nightly backup). The agent runs each job as a service of its
/// own; a job is never run twice at once, its runs are recorded (`desactl job list`),
/// journaled and counted in the metrics, and a run missed while the agent was down is
/// made up at its start (like systemd's `Persistent=true`).
public protocol JobProviding: Capability {
    /// The jobs this config asks for (none when the capability is off).
    func jobs(_ config: Config) -> [Job]
}

public struct Job: Sendable {
    /// Unique, and fixed: runs are recorded under it (`cert-renewal`).
    public var name: String
    public var schedule: JobSchedule
    /// One run. What it returns is its outcome's detail (journaled and recorded); an error
    /// fails the run (journaled) and the next run comes at its time as usual.
    public var run: @Sendable (JobContext) async throws -> String

    public init(_ name: String, _ schedule: JobSchedule, run: @escaping @Sendable (JobContext) async throws -> String) {
        self.name = name; self.schedule = schedule; self.run = run
    }
}

/// What a run may use.
public struct JobContext: Sendable {
    public var engine: Engine
    /// The time the run was due.
    public var due: Date
}

/// When a job runs. Times are the engine's (`TimeSource`), so tests move the clock.
public enum JobSchedule: Sendable, Equatable, CustomStringConvertible {
    /// Now (at the agent's start), then `seconds` after each run ends.
    case every(seconds: Int)
    /// Each day at `hour:minute` in `timeZone`, plus a random delay of up to
    /// `randomDelay` seconds (so a regency's servers do not all start at once).
    case daily(hour: Int, minute: Int, randomDelay: Int, timeZone: TimeZone = .current)

    public var description: String {
        switch self {
        case .every(let s): return "every \(s) s"
        case .daily(let h, let m, let d, let tz):
            return String(format: "daily at %02d:%02d %@", h, m, tz.identifier) + (d > 0 ? " + up to \(d) s" : "")
        }
    }

    /// The scheduled moment at or before `now` (nil for `every`): a run that started before
    /// it was missed.
    public func previous(atOrBefore now: Date) -> Date? {
        guard case .daily(let h, let m, _, let tz) = self else { return nil }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = tz
        guard let today = cal.date(bySettingHour: h, minute: m, second: 0, of: now) else { return nil }
        return today <= now ? today : cal.date(byAdding: .day, value: -1, to: today)
    }

    /// When a job is next due: now if its last run started before its last scheduled time
    /// (missed while the agent was down), else by the schedule from its last run. Never
    /// run: an interval job at once, a daily one at its next time (a server set up in the
    /// afternoon has its first nightly run that night).
    public func due(lastStart: Date?, lastEnd: Date?, now: Date, random: (Int) -> Int = { $0 > 0 ? Int.random(in: 0...$0) : 0 }) -> Date {
        guard let lastStart else {
            if case .every = self { return now }
            return next(after: now, random: random)
        }
        if let scheduled = previous(atOrBefore: now), lastStart < scheduled { return now }
        return next(after: lastEnd ?? lastStart, random: random)
    }

    /// When the next run is due after a run that ended at `end` (for `daily`, the next
    /// scheduled moment after `end`, with its random delay drawn by `random(upTo:)`).
    public func next(after end: Date, random: (Int) -> Int = { $0 > 0 ? Int.random(in: 0...$0) : 0 }) -> Date {
        switch self {
        case .every(let s):
            return end.addingTimeInterval(TimeInterval(s))
        case .daily(_, _, let delay, let tz):
            var cal = Calendar(identifier: .gregorian)
            cal.timeZone = tz
            let last = previous(atOrBefore: end) ?? end
            let next = cal.date(byAdding: .day, value: 1, to: last) ?? end.addingTimeInterval(86_400)
            return next.addingTimeInterval(TimeInterval(random(delay)))
        }
    }
}

/// A job's runs in the state database: the last start, end and outcome of each.
public struct JobRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "job_run"
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { Timestamp.encoding }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { Timestamp.decoding }

    public var name: String
    public var lastStart: Date
    public var lastEnd: Date?
    /// `running`, `ok` or `failed`.
    public var outcome: String
    public var detail: String

    static let migration = StateMigration("v5-jobs") { db in
        try db.create(table: "job_run") { t in
            t.column("name", .text).primaryKey()
            t.column("lastStart", .text).notNull()
            t.column("lastEnd", .text)
            t.column("outcome", .text).notNull()
            t.column("detail", .text).notNull()
        }
    }
}

extension Engine {
    /// The jobs of the capabilities in use, with the agent's own (`reconcile`).
    public var jobs: [Job] {
        var out = capabilities.flatMap { ($0 as? any JobProviding)?.jobs(config) ?? [] }
        if config.health.repairDrift { out.append(Reconcile.job(every: config.health.interval)) }
        return out
    }

    public func jobRecords() throws -> [String: JobRecord] {
        try store.queue.read { db in
            Dictionary(try JobRecord.fetchAll(db).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        }
    }

    /// Runs `job` once, now, recording its start and end and journaling its outcome;
    /// returns the record. Two runs of one job never overlap: a run whose record says
    /// `running` in a live process is skipped (the lock is the job's own file).
    @discardableResult
    public func runJob(_ job: Job, due: Date) async -> JobRecord {
        let lockPath = config.stateDir + "/jobs/\(job.name).lock"
        let held: StateLock
        do {
            try FileManager.default.createDirectory(atPath: config.stateDir + "/jobs", withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            held = try StateLock(path: lockPath, timeout: 0)
        } catch {
            let r = JobRecord(name: job.name, lastStart: now(), lastEnd: now(), outcome: "skipped",
                              detail: "another run of \(job.name) is still going")
            logger.notice("job \(job.name): \(r.detail)")
            return r
        }
        defer { withExtendedLifetime(held) {} }
        var record = JobRecord(name: job.name, lastStart: now(), lastEnd: nil, outcome: "running", detail: "")
        saveJob(record)
        do {
            record.detail = try await job.run(JobContext(engine: self, due: due))
            record.outcome = "ok"
        } catch let e as CancellationError {
            record.outcome = "failed"; record.detail = "stopped with the agent"
            record.lastEnd = now()
            saveJob(record)
            _ = e
            return record
        } catch {
            record.outcome = "failed"; record.detail = Applier.message(error)
        }
        record.lastEnd = now()
        saveJob(record)
        let ok = record.outcome == "ok"
        // A run that did nothing says nothing: an interval job runs every minute or hour.
        guard !ok || !record.detail.isEmpty else { return record }
        let msg = ok ? "\(job.name): \(record.detail)" : "\(job.name) failed: \(record.detail)"
        if ok { logger.notice("\(msg)") } else { logger.error("\(msg)") }
        journal.send(["MESSAGE": msg, "DESA_OP": job.name, "DESA_JOB": job.name, "DESA_OUTCOME": record.outcome,
                      "PRIORITY": "\((ok ? JournalPriority.notice : .err).rawValue)"])
        return record
    }

    /// A short write: a run's record.
    func saveJob(_ r: JobRecord) {
        do { try store.queue.write { db in try r.save(db) } } catch {
            logger.error("cannot record the run of job \(r.name): \(Applier.message(error))")
        }
    }

    /// When `job` is next due, by the engine's clock (see `JobSchedule.due`).
    public func nextDue(_ job: Job, last: JobRecord?, random: (Int) -> Int = { $0 > 0 ? Int.random(in: 0...$0) : 0 }) -> Date {
        job.schedule.due(lastStart: last?.lastStart, lastEnd: last?.lastEnd, now: now(), random: random)
    }
}

/// The agent's own job when `health.repair_drift` is on: when the server differs from
/// the state database, `desactl apply` (each repaired tenant is journaled by the apply).
enum Reconcile {
    static func job(every seconds: Int) -> Job {
        Job("reconcile", .every(seconds: seconds)) { ctx in
            let engine = ctx.engine
            let outcome = try await BlockingThread.run("reconcile") { () -> (actions: Int, report: ChangeReport)? in
                let plan = try engine.plan()
                guard !plan.steps.isEmpty else { return nil }
                return (plan.steps.count, try engine.apply())
            }
            guard let outcome else { return "" }
            guard outcome.report.exitStatus == ExitStatus.ok else {
                throw DesaError(.checkFailed, "repairing drift failed: \(outcome.report.summary)")
            }
            return "repaired drift, \(outcome.actions) action\(outcome.actions == 1 ? "" : "s")"
        }
    }
}
