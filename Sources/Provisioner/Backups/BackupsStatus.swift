import Foundation
import GRDB

extension BackupsCapability: StatusReporting {
    public var statusHeading: String { "Cadangan terakhir" }

    /// The age of each tenant's last good backup, judged as the backup check judges it.
    public func statusFacts(_ engine: Engine, tenants: [Tenant], now: Date) throws -> [String: StatusFact] {
        let b = engine.config.backup
        guard b.enabled else { return [:] }
        let records = try engine.store.queue.read { try BackupRecord.byCode($0) }
        var out: [String: StatusFact] = [:]
        for t in tenants {
            let o = BackupHealthCheck.judge(records[t.code], tenant: t, now: now, b)
            let text: String
            if let hours = o.value {
                text = hours < 48 ? String(format: "%.0f jam lalu", hours) : String(format: "%.0f hari lalu", hours / 24)
            } else {
                text = "belum pernah"
            }
            out[t.code] = StatusFact(records[t.code]?.lastOutcome == "failed" ? text + " (terakhir gagal)" : text, o.state)
        }
        return out
    }
}
