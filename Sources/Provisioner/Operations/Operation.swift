import Foundation

/// Work that does not converge: it talks to a slow or remote party (a CA), or changes
/// what a tenant holds (an application installed; next, backups, restores, upgrades).
/// Such work stays outside apply, and every piece of it has the same shape: a lock
/// scope, a dry run, progress on a terminal, one audit row and one summary journal entry
/// (plus an entry per tenant it says something about), a JSON report and an exit status.
/// `Engine.perform` gives it all of that; an operation writes only what it does.
public protocol Operation: Sendable {
    associatedtype Report: OperationReport
    /// Its name in the audit table and the journal's `DESA_OP` (`cert issue`, `app install`).
    var name: String { get }
    /// What it acts on, for the audit row (`32.04.05.2001`, `all`).
    var target: String { get }
    /// What it must not run beside: the state lock (it changes the state database as a
    /// command does), a lock of its own (certificates: tenants may change meanwhile), or none.
    var lock: OperationLock { get }
    /// Plan only: ask no one, change nothing, write no audit row.
    var dryRun: Bool { get }
    /// Carries it out. An error means the whole operation failed (audit `rejected` for
    /// invalid input, else `error`); a report whose exit status is not 0 means some of
    /// it failed (audit `failed`).
    func run(_ context: OperationContext) throws -> Report
}

public enum OperationLock: Sendable, Equatable {
    case none
    /// The state lock every mutating command takes.
    case state
    /// A lock file of its own, waited for up to `timeout` seconds.
    case file(String, timeout: TimeInterval)
}

/// What an operation tells its caller: a line for the audit row, a JSON document, lines
/// for people, and the exit status.
public protocol OperationReport: Sendable {
    var summary: String { get }
    var json: JSON { get }
    var lines: [String] { get }
    var exitStatus: Int32 { get }
    /// A run that found nothing to do and did nothing (a renewal with nothing due): no
    /// audit row, no journal entry, or an hourly job would fill both.
    var didNothing: Bool { get }
}

extension OperationReport {
    public var didNothing: Bool { false }
}

/// What an operation may use: the engine (config, store, runner, clock), progress, and
/// journal entries that carry its name.
public struct OperationContext: Sendable {
    public let engine: Engine
    public let name: String

    public var progress: ProgressReporting { engine.progress }

    /// A journal entry of this operation about one tenant (or the server): `DESA_OP` is
    /// the operation's name, `DESA_TENANT` and `DESA_SLUG` the tenant's.
    public func note(_ message: String, tenant: Tenant? = nil, priority: JournalPriority = .info, fields: [String: String] = [:]) {
        var f = fields
        f["MESSAGE"] = message
        f["DESA_OP"] = f["DESA_OP"] ?? name
        f["PRIORITY"] = "\(priority.rawValue)"
        if let t = tenant { f["DESA_TENANT"] = t.code; f["DESA_SLUG"] = t.slug }
        switch priority {
        case .err: engine.logger.error("\(message)")
        case .warning: engine.logger.warning("\(message)")
        case .notice: engine.logger.notice("\(message)")
        case .info: engine.logger.info("\(message)")
        }
        engine.journal.send(f)
    }
}

extension Engine {
    /// Runs an operation in its shape: its lock, then its work, then its audit row and
    /// summary journal entry (none for a dry run). Errors are rethrown after they are
    /// recorded.
    public func perform<O: Operation>(_ op: O) throws -> O.Report {
        let held: StateLock?
        switch op.lock {
        case .none: held = nil
        case .state: held = try lock()
        case .file(let path, let timeout):
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            held = try StateLock(path: path, timeout: timeout)
        }
        defer { withExtendedLifetime(held) {} }
        let report: O.Report
        do {
            report = try op.run(OperationContext(engine: self, name: op.name))
        } catch {
            if !op.dryRun {
                let refused = (error as? DesaError)?.kind == .invalidInput
                record(op: op.name, target: op.target, outcome: refused ? "rejected" : "error", detail: Applier.message(error))
            }
            throw error
        }
        if !op.dryRun && !(report.didNothing && report.exitStatus == ExitStatus.ok) {
            record(op: op.name, target: op.target, outcome: report.exitStatus == ExitStatus.ok ? "ok" : "failed", detail: report.summary)
        }
        return report
    }
}
