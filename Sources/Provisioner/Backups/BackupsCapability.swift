import Foundation
import GRDB

extension HealthCheck {
    /// The age and outcome of the tenant's last backup.
    public static let backup: HealthCheck = "backup"
}

/// Nightly backups of every tenant with restic (`[backup]`). It plans nothing: its work is
/// operations (`backup run`, `restore`, `verify`, `forget`), its state is each tenant's
/// last backup (`backup` table), its health check says when a backup is late or failed, and
/// its job is the agent's nightly run.
public struct BackupsCapability: StatefulCapability {
    public struct Observation: Sendable {}
    public init() {}
    public var name: String { "backups" }
    public var settings: [any ConfigSection.Type] { [BackupSettings.self] }
    public var migrations: [StateMigration] { [BackupRecord.migration] }
    public func load(_ db: Database, _ d: DesiredState) throws {}
    public func observe(_ desired: DesiredState, _ host: Observing) throws -> Observation { Observation() }
    public func plan(_ desired: DesiredState, _ seen: Observation) throws -> CapabilityPlan { CapabilityPlan() }
}

/// Degraded when the last good backup is older than `backup.degraded_after_hours`, down
/// past `down_after_hours` or when the last run failed for it; a tenant never backed up is
/// judged by its age. Its value is the age in hours (`desa_backup_age_hours`).
struct BackupHealthCheck: TenantCheck {
    var id: HealthCheck { .backup }
    var messageIDs: [HealthState: String] { [.degraded: BackupMessageID.stale, .down: BackupMessageID.down, .ok: BackupMessageID.ok] }

    func prepare(_ s: SweepContext) async throws -> [String: BackupRecord] {
        guard s.config.backup.enabled else { return [:] }
        return try await s.off { [engine = s.engine] in try engine.store.queue.read { db in try BackupRecord.byCode(db) } }
    }

    func check(_ t: Tenant, _ records: [String: BackupRecord], _ s: SweepContext) async -> CheckOutcome? {
        guard s.config.backup.enabled else { return nil }
        return Self.judge(records[t.code], tenant: t, now: s.now, s.config.backup)
    }

    static func judge(_ r: BackupRecord?, tenant t: Tenant, now: Date, _ b: BackupSettings) -> CheckOutcome {
        let age = r?.ageHours(now: now)
        let since = age.map { String(format: "last good backup %.0f h ago", $0) } ?? "never backed up"
        if let r, r.lastOutcome == "failed" {
            return CheckOutcome(.backup, .down, "its last backup failed: \(r.lastError ?? "?"); \(since)", value: age)
        }
        // A tenant never backed up counts from its creation.
        let hours = age ?? max(0, now.timeIntervalSince(t.createdAt) / 3600)
        if hours > Double(b.downAfterHours) { return CheckOutcome(.backup, .down, since + ", past \(b.downAfterHours) h", value: age) }
        if hours > Double(b.degradedAfterHours) { return CheckOutcome(.backup, .degraded, since + ", past \(b.degradedAfterHours) h", value: age) }
        return CheckOutcome(.backup, .ok, value: age)
    }
}

extension BackupsCapability: HealthChecking, MetricsProviding, JobProviding {
    public var healthChecks: [any TenantCheck] { [BackupHealthCheck()] }

    public var metrics: [MetricDefinition] {
        [MetricDefinition(name: "backup_age_hours", help: "Hours since the tenant's last good backup.", check: .backup)]
    }

    /// Nightly at `backup.time` plus a random delay (a night missed while the agent was
    /// down is made up at its start); then the retention, unless the repository is append-only.
    public func jobs(_ config: Config) -> [Job] {
        guard config.backup.enabled, let (h, m) = config.backup.hourMinute else { return [] }
        return [Job("backup", .daily(hour: h, minute: m, randomDelay: config.backup.randomDelay)) { ctx in
            let engine = ctx.engine
            return try await BlockingThread.run("backup") {
                let r = try engine.perform(BackupRun(engine: engine, keys: [], dryRun: false))
                var text = r.summary
                if engine.config.backup.forgetAfterRun {
                    do { text += "; " + (try engine.perform(BackupForget(dryRun: false))).summary } catch {
                        text += "; forget failed: " + Applier.message(error)
                    }
                }
                if r.exitStatus != ExitStatus.ok { throw DesaError(.checkFailed, text) }
                return text
            }
        }]
    }
}
